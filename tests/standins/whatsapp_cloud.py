"""A WhatsApp Business Cloud API stand-in over real HTTP on 127.0.0.1.

It takes `POST /{version}/{phone-number-id}/messages` as Meta documents it and refuses
what Meta refuses, with Meta's error body and HTTP status:

- `Authorization: Bearer <token>` (else 190, 401), a `vN.N` version and the phone
  number id it serves (else 2500 / 100, 400);
- a JSON body with `messaging_product: "whatsapp"`, `to` a phone number,
  `recipient_type` "individual" when given, and `type: "template"`: free text outside
  a conversation is refused with 131047 (re-engagement message), as Meta does;
- the template known and APPROVED in its registry for that language code (else 132001;
  paused 132015; disabled 132016), its body parameters as many as the template's
  placeholders (else 132000), each a non-empty one-line text (no newline or tab, no more
  than 4 spaces in a row; else 100), the body once filled at most 1,024 characters
  (else 132005), and its copy-code button at the template's index with one
  `coupon_code` of at most 15 letters and digits.

Faults on request: `fail_next(code, times)` or `fail_recipient(number, code)` answer a
valid request with any documented error code (table ERRORS), `raw_next` with any HTTP
answer, `hold()` keeps requests waiting (a client's timeout). Accepted messages are kept
in `accepted`. Sources: channels/WHATSAPP.md.

For another process: `python -m tests.standins.whatsapp_cloud --port 9200 --template
id:kupon_belanja_lagi:4` (LANGUAGE_CODE:NAME:PARAMETERS) prints `listening
127.0.0.1:9200`; `GET /_standin/messages` lists what it accepted and `POST /_standin/faults` ({"code", "times"} or {"code",
"recipient"}) injects faults.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import signal
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from channels.sinks import LOCALHOST, Collector, LocalHttpServer

TOKEN = "EAAJBstandin0token"
PHONE_NUMBER_ID = "106540352242922"

# code -> (HTTP status, title, details), as Meta's error-code table gives them
# (https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes).
ERRORS: dict[int, tuple[int, str, str]] = {
    0: (401, "AuthException", "We were unable to authenticate the app user."),
    190: (401, "Access token has expired", "Your access token has expired or is not valid."),
    10: (403, "Permission denied", "Permission is either not granted or has been removed."),
    4: (429, "API Too Many Calls", "The app has reached its API call rate limit."),
    80007: (429, "Rate limit issues", "The WhatsApp Business Account has reached its rate limit."),
    130429: (429, "Rate limit hit", "Message failed to send because there were too many messages sent "
                                    "from this phone number in a short period of time."),
    131048: (400, "Spam rate limit hit", "Message failed to send because there are restrictions on how many "
                                         "messages can be sent from this phone number."),
    131056: (400, "(Business Account, Consumer Account) pair rate limit hit",
             "Message failed to send because there were too many messages sent from this phone number "
             "to the same phone number in a short period of time."),
    368: (403, "Temporarily blocked for policies violations",
          "The WhatsApp Business Account associated with the app has been restricted or disabled."),
    1: (400, "API Unknown", "Invalid request or possible server error."),
    2: (503, "API Service", "Temporary due to downtime or due to being overloaded."),
    100: (400, "Invalid parameter", "The request included one or more unsupported or misspelled parameters."),
    2500: (400, "Unknown path components", "The path is not a Graph API path."),
    131000: (500, "Something went wrong", "Message failed to send due to an unknown error."),
    131008: (400, "Required parameter is missing", "The request is missing a required parameter."),
    131009: (400, "Parameter value is not valid", "One or more parameter values are invalid."),
    131016: (503, "Service unavailable", "A service is temporarily unavailable."),
    131026: (400, "Message undeliverable", "Unable to deliver message: the recipient is not a WhatsApp user, "
                                           "has not accepted the terms, or uses an old client."),
    131047: (400, "Re-engagement message", "Message failed to send because more than 24 hours have passed "
                                           "since the customer last replied to this number."),
    131049: (400, "This message was not delivered to maintain healthy ecosystem engagement.",
             "In order to maintain a healthy ecosystem engagement, the message failed to be delivered."),
    132000: (400, "Number of parameters does not match the expected number of params",
             "The number of parameters does not match the number the template expects."),
    132001: (404, "Template name does not exist in the translation",
             "The template does not exist in the specified language or has not been approved."),
    132005: (400, "Translated text too long", "The text is too long once the parameters are filled in."),
    132012: (400, "Parameter format does not match format in the created template",
             "A parameter does not match the format the template was created with."),
    132015: (400, "Template is paused", "The template is paused because of its low quality."),
    132016: (400, "Template is disabled", "The template has been permanently disabled because of its low quality."),
}

_PATH = re.compile(r"/(?P<version>[^/]+)/(?P<phone>[^/]+)/messages/?")
_VERSION = re.compile(r"v\d+\.\d+")
_PHONE = re.compile(r"\+?[1-9]\d{6,14}")
_PHONE_FORMATTING = re.compile(r"[\s\-().]")
_BAD_TEXT = re.compile(r"[\n\t]| {5,}")
MAX_BODY = 1024
MAX_COUPON_CODE = 15


@dataclass
class Template:
    """An approved (or not) template in the stand-in's registry."""

    name: str
    language: str  # its language code at Meta
    parameters: int = 4  # {{1}}..{{n}} in its body
    copy_code_index: int | None = 0  # the copy-code button's index; None: the template has none
    status: str = "APPROVED"  # APPROVED, PAUSED, DISABLED, PENDING, REJECTED
    text: str | None = None  # the body, to check its length once filled


@dataclass(frozen=True)
class AcceptedMessage:
    to: str
    template: str
    language: str
    body: tuple[str, ...]
    coupon_code: str | None
    message_id: str
    payload: dict[str, Any] = field(repr=False)


class _Refusal(Exception):
    def __init__(self, code: int, details: str | None = None, status: int | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.details = details
        self.status = status


@dataclass
class _Fault:
    code: int
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


class WhatsAppCloudStandIn(LocalHttpServer):
    """The Cloud API's messages endpoint for one phone number id and token."""

    def __init__(self, templates: list[Template] | None = None, *, token: str = TOKEN,
                 phone_number_id: str = PHONE_NUMBER_ID, host: str = LOCALHOST, port: int = 0) -> None:
        self.token = token
        self.phone_number_id = phone_number_id
        self._lock = threading.Lock()
        self._templates: dict[tuple[str, str], Template] = {}
        for template in templates or []:
            self.add_template(template)
        self._accepted = Collector()
        self.refused: list[tuple[int, str]] = []  # (code, details) of every refusal, in order
        self.requests = 0
        self._next_faults: deque[_Fault] = deque()
        self._raw_answers: deque[tuple[int, dict[str, str], bytes]] = deque()
        self._recipient_faults: dict[str, _Fault] = {}
        self._released = threading.Event()
        self._released.set()
        self.waiting = 0  # requests held by hold()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.path == "/_standin/faults":
                    stand_in._control(json.loads(body or b"{}"))
                    self._answer(204, {}, b"")
                    return
                self._answer(*stand_in._handle(self.path, self.headers.get("Authorization"),
                                               self.headers.get("Content-Type", ""), body))

            def do_GET(self) -> None:
                if self.path == "/_standin/messages":
                    listing = [{"to": m.to, "template": m.template, "language": m.language,
                                "body": list(m.body), "coupon_code": m.coupon_code, "id": m.message_id}
                               for m in stand_in.accepted]
                    self._answer(200, {}, json.dumps(listing).encode())
                    return
                self._answer(*stand_in._error(100, "Unsupported get request."))

            def _answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler, host, port)

    def stop(self) -> None:
        self._released.set()  # a held request must not keep shutdown waiting
        super().stop()

    @property
    def api_url(self) -> str:
        """What ENCORE_WHATSAPP_API_URL points at."""
        return self.url

    @property
    def channel_url(self) -> str:
        """ENCORE_CHANNEL_WHATSAPP for this stand-in (Apprise's form)."""
        return f"whatsapp://{self.token}@{self.phone_number_id}/{{whatsapp}}"

    # ---------------------------------------------------------------- test controls

    def add_template(self, template: Template) -> None:
        with self._lock:
            self._templates[(template.name, template.language)] = template

    def set_status(self, name: str, language: str, status: str) -> None:
        """Meta pauses or disables a template after poor feedback."""
        with self._lock:
            self._templates[(name, language)].status = status

    def fail_next(self, code: int, times: int = 1, *, status: int | None = None,
                  headers: dict[str, str] | None = None) -> None:
        """Answer the next `times` valid requests with error `code` (ERRORS)."""
        with self._lock:
            self._next_faults.extend(_Fault(code, status, headers or {}) for _ in range(times))

    def fail_recipient(self, number: str, code: int) -> None:
        """Answer every valid request to `number` with error `code` until cleared."""
        with self._lock:
            self._recipient_faults[_digits(number)] = _Fault(code)

    def raw_next(self, status: int, payload: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """Answer the next request with this, whatever it holds (a proxy's 502 page)."""
        with self._lock:
            self._raw_answers.append((status, headers or {}, payload))

    def clear_faults(self) -> None:
        with self._lock:
            self._next_faults.clear()
            self._raw_answers.clear()
            self._recipient_faults.clear()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Requests wait, unanswered, until the block ends (a provider that hangs)."""
        self._released.clear()
        try:
            yield
        finally:
            self._released.set()

    @property
    def accepted(self) -> list[AcceptedMessage]:
        return self._accepted.snapshot()

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Block until `count` messages were accepted; False on timeout."""
        return self._accepted.wait_for(count, timeout)

    # ------------------------------------------------------------------- handling

    def _handle(self, path: str, authorization: str | None, content_type: str,
                body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requests += 1
            self.waiting += 1
        try:
            self._released.wait()
        finally:
            with self._lock:
                self.waiting -= 1
        with self._lock:
            if self._raw_answers:
                return self._raw_answers.popleft()
        try:
            payload, template = self._validate(path, authorization, content_type, body)
        except _Refusal as refusal:
            return self._error(refusal.code, refusal.details, refusal.status)
        fault = self._fault_for(str(payload["to"]))
        if fault is not None:
            status, headers, answer = self._error(fault.code, status=fault.status)
            return status, {**headers, **fault.headers}, answer
        return self._accept(payload, template)

    def _fault_for(self, to: str) -> _Fault | None:
        with self._lock:
            fault = self._recipient_faults.get(_digits(to))
            if fault is None and self._next_faults:
                fault = self._next_faults.popleft()
            return fault

    def _error(self, code: int, details: str | None = None,
               status: int | None = None) -> tuple[int, dict[str, str], bytes]:
        default_status, title, default_details = ERRORS.get(code, (400, "Invalid parameter", ""))
        details = details or default_details
        with self._lock:
            self.refused.append((code, details))
        error = {
            "message": f"(#{code}) {title}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": secrets.token_urlsafe(12),
        }
        return status or default_status, {}, json.dumps({"error": error}).encode()

    def _validate(self, path: str, authorization: str | None, content_type: str,
                  body: bytes) -> tuple[dict[str, Any], Template]:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), self.token):
            raise _Refusal(190, "Invalid OAuth access token - Cannot parse access token")
        match = _PATH.fullmatch(path)
        if not match or not _VERSION.fullmatch(match["version"]):
            raise _Refusal(2500, f"Unknown path components: {path}")
        if match["phone"] != self.phone_number_id:
            raise _Refusal(100, f"Unsupported post request. Object with ID '{match['phone']}' does not exist")
        if "json" not in content_type.lower():
            raise _Refusal(100, "The request body must be JSON (Content-Type: application/json)")
        try:
            payload = json.loads(body)
        except ValueError:
            raise _Refusal(100, "The request body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise _Refusal(100, "The request body must be a JSON object")
        if payload.get("messaging_product") != "whatsapp":
            raise _Refusal(100, "The parameter messaging_product is required and must be whatsapp")
        if payload.get("recipient_type", "individual") != "individual":
            raise _Refusal(100, "recipient_type must be individual")
        to = payload.get("to")
        if not isinstance(to, str) or not to:
            raise _Refusal(131008, "The parameter to is required")
        if not _PHONE.fullmatch(_PHONE_FORMATTING.sub("", to)):
            raise _Refusal(131009, f"to: {to!r} is not a phone number")
        kind = payload.get("type", "text")
        if kind != "template":
            # Outside a customer-service window Meta takes templates only.
            raise _Refusal(131047)
        return payload, self._check_template(payload.get("template"))

    def _check_template(self, template: Any) -> Template:
        if not isinstance(template, dict):
            raise _Refusal(131008, "The parameter template is required")
        name, language = template.get("name"), template.get("language")
        if not isinstance(name, str) or not name:
            raise _Refusal(131008, "The parameter template.name is required")
        if not isinstance(language, dict) or not isinstance(language.get("code"), str):
            raise _Refusal(131008, "The parameter template.language.code is required")
        with self._lock:
            known = self._templates.get((name, language["code"]))
        if known is None or known.status in ("PENDING", "REJECTED"):
            raise _Refusal(132001, f"template name ({name}) does not exist in {language['code']}")
        if known.status == "PAUSED":
            raise _Refusal(132015)
        if known.status == "DISABLED":
            raise _Refusal(132016)
        components = template.get("components", [])
        if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
            raise _Refusal(100, "template.components must be a list of objects")
        bodies = [c for c in components if c.get("type") == "body"]
        buttons = [c for c in components if c.get("type") == "button"]
        others = [c.get("type") for c in components if c.get("type") not in ("body", "button")]
        if others:
            raise _Refusal(100, f"template.components: unexpected component type {others[0]!r}")
        texts = self._check_body(bodies, known)
        self._check_button(buttons, known)
        if known.text is not None:
            filled = known.text
            for number, text in enumerate(texts, start=1):
                filled = filled.replace(f"{{{{{number}}}}}", text)
            if len(filled) > MAX_BODY:
                raise _Refusal(132005)
        return known

    @staticmethod
    def _check_body(bodies: list[dict[str, Any]], known: Template) -> list[str]:
        if len(bodies) > 1:
            raise _Refusal(100, "template.components: more than one body component")
        parameters = bodies[0].get("parameters", []) if bodies else []
        if not isinstance(parameters, list):
            raise _Refusal(100, "body.parameters must be a list")
        if len(parameters) != known.parameters:
            raise _Refusal(132000, f"body: number of localizable_params ({len(parameters)}) does not match "
                                   f"the expected number of params ({known.parameters})")
        texts = []
        for index, parameter in enumerate(parameters):
            if not isinstance(parameter, dict) or parameter.get("type") != "text":
                raise _Refusal(132012, f"body.parameters[{index}] must be of type text")
            text = parameter.get("text")
            if not isinstance(text, str) or not text.strip():
                raise _Refusal(131008, f"body.parameters[{index}].text is required")
            if _BAD_TEXT.search(text):
                raise _Refusal(100, "Param text cannot have new-line/tab characters or more than 4 consecutive spaces")
            texts.append(text)
        return texts

    @staticmethod
    def _check_button(buttons: list[dict[str, Any]], known: Template) -> None:
        copy_codes = [b for b in buttons if str(b.get("sub_type", "")).lower() == "copy_code"]
        if known.copy_code_index is None:
            if copy_codes:
                raise _Refusal(132000, "button: the template has no copy-code button")
            return
        if len(copy_codes) != 1:
            raise _Refusal(132000, f"button: number of copy_code button components ({len(copy_codes)}) "
                                   f"does not match the expected number (1)")
        button = copy_codes[0]
        index = button.get("index")
        if isinstance(index, str) and index.isdigit():
            index = int(index)
        if type(index) is not int or index != known.copy_code_index:
            raise _Refusal(131009, f"button.index: {button.get('index')!r} is not the copy-code button's "
                                   f"index ({known.copy_code_index})")
        parameters = button.get("parameters")
        if not isinstance(parameters, list) or len(parameters) != 1:
            raise _Refusal(132000, "button: number of params does not match the expected number of params (1)")
        parameter = parameters[0]
        if not isinstance(parameter, dict) or parameter.get("type") != "coupon_code":
            raise _Refusal(132012, "button.parameters[0] must be of type coupon_code")
        code = parameter.get("coupon_code")
        if (not isinstance(code, str) or not code.isascii() or not code.isalnum()
                or not 1 <= len(code) <= MAX_COUPON_CODE):
            raise _Refusal(131009, f"coupon_code: {code!r} is not 1 to {MAX_COUPON_CODE} letters and digits")

    def _accept(self, payload: dict[str, Any], known: Template) -> tuple[int, dict[str, str], bytes]:
        components = payload["template"].get("components", [])
        body = next((c for c in components if c.get("type") == "body"), {"parameters": []})
        button = next((c for c in components if str(c.get("sub_type", "")).lower() == "copy_code"), None)
        message_id = "wamid." + secrets.token_urlsafe(24)
        self._accepted.add(AcceptedMessage(
            to=payload["to"],
            template=known.name,
            language=known.language,
            body=tuple(p["text"] for p in body["parameters"]),
            coupon_code=button["parameters"][0]["coupon_code"] if button else None,
            message_id=message_id,
            payload=payload,
        ))
        answer = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": payload["to"], "wa_id": _digits(payload["to"])}],
            "messages": [{"id": message_id, "message_status": "accepted"}],
        }
        return 200, {}, json.dumps(answer).encode()

    def _control(self, request: dict[str, Any]) -> None:
        code = int(request["code"])
        if "recipient" in request:
            self.fail_recipient(str(request["recipient"]), code)
        else:
            self.fail_next(code, int(request.get("times", 1)))


def _digits(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())


def _template_argument(text: str) -> Template:
    """LANGUAGE_CODE:NAME:PARAMETERS[:STATUS], e.g. id:kupon_belanja_lagi:4."""
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise argparse.ArgumentTypeError(f"{text!r}: expected LANGUAGE_CODE:NAME:PARAMETERS[:STATUS]")
    status = parts[3].upper() if len(parts) == 4 else "APPROVED"
    return Template(name=parts[1], language=parts[0], parameters=int(parts[2]), status=status)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.standins.whatsapp_cloud")
    parser.add_argument("--host", default=LOCALHOST)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=TOKEN)
    parser.add_argument("--phone-number-id", default=PHONE_NUMBER_ID)
    parser.add_argument("--template", action="append", type=_template_argument, default=[],
                        help="LANGUAGE_CODE:NAME:PARAMETERS[:STATUS], repeatable")
    parser.add_argument("--fail-recipient", action="append", default=[], help="NUMBER:CODE, repeatable")
    args = parser.parse_args(argv)

    stand_in = WhatsAppCloudStandIn(args.template, token=args.token, phone_number_id=args.phone_number_id,
                                    host=args.host, port=args.port)
    for rule in args.fail_recipient:
        number, _, code = rule.rpartition(":")
        stand_in.fail_recipient(number, int(code))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stand_in.start()
    print(f"listening {stand_in.host}:{stand_in.port}", flush=True)
    while not stop.wait(3600):
        pass
    stand_in.stop()
    print(f"accepted {len(stand_in.accepted)}, refused {len(stand_in.refused)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
