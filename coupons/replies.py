"""SMS replies (SPEC rule 18): what a reply asks for, whether Twilio sent it, and the
TwiML that answers it. Pure: the web endpoint does the I/O.

Sources:
- Keywords: Twilio acts on single-word replies only ("replying STOP PLEASE or PLEASE
  CANCEL will not" opt out), STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT opt out,
  START, YES, UNSTOP opt back in, HELP and INFO ask for help:
  https://www.twilio.com/help/faq/sms/does-twilio-support-stop-block-and-cancel-aka-sms-filtering
  and https://support.twilio.com/hc/en-us/articles/223134027-Twilio-support-for-opt-out-keywords-SMS-STOP-filtering.
  Twilio now also blocks on REVOKE and OPTOUT
  (https://www.twilio.com/docs/messaging/tutorials/advanced-opt-out): once Twilio blocks a
  number, sending to it fails (error 21610), so Encore opts it out on the same words.
- Signature: `X-Twilio-Signature` is the base64 HMAC-SHA1, keyed with the auth token,
  of the full URL Twilio called followed by every POST parameter's name and value,
  sorted by name: https://www.twilio.com/docs/usage/webhooks/webhooks-security; the
  worked examples are those of Twilio's own validator
  (twilio-python tests/unit/test_request_validator.py), which also accepts the URL with
  or without its port.
- TwiML: `<Response><Message>text</Message></Response>`:
  https://www.twilio.com/docs/messaging/twiml
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit
from xml.sax.saxutils import escape

from coupons.messages import DEFAULT_LANGUAGE, LANGUAGES, translations

ReplyKind = Literal["opt_out", "opt_in", "help"]

OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})

_PUNCTUATION = ".,!?;:¡¿。！？\"'()"

SIGNATURE_HEADER = "X-Twilio-Signature"
TWIML_CONTENT_TYPE = "application/xml"
_DEFAULT_PORTS = {"https": 443, "http": 80}
# Characters XML 1.0 cannot carry at all (a shop name is the seller's text).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

Params = Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]]
"""Form parameters: a mapping (a list value for a repeated name) or (name, value) pairs."""


def classify_reply(body: str | None) -> ReplyKind | None:
    """What an SMS reply asks for: the whole message, trimmed, in any case, must be one
    keyword ("Stop" opts out, "stop please" does not: as Twilio). A stop word may also
    carry punctuation ("Stop." or "STOP!"): whether Twilio blocks those is not
    documented, and a customer who writes them wants no more texts; a start word must
    be exact, since it gives consent back."""
    word = (body or "").strip().upper()
    if word.strip(_PUNCTUATION) in OPT_OUT_WORDS:
        return "opt_out"
    if word in OPT_IN_WORDS:
        return "opt_in"
    if word in HELP_WORDS:
        return "help"
    return None


# ------------------------------------------------------------------------- signature


def twilio_signature(url: str, params: Params, token: str) -> str:
    """Twilio's `X-Twilio-Signature` for a form POST to `url` (as Twilio called it,
    query string included)."""
    data = url + "".join(name + value for name, value in sorted(set(_pairs(params))))
    digest = hmac.new(token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_twilio_signature(url: str, params: Params, token: str, signature: str | None) -> bool:
    """Whether `signature` is Twilio's for this request, compared in constant time.

    Twilio may sign the URL with or without its port (behind a proxy the port
    differs), so both are tried, as Twilio's own validator does. No token or no
    signature is never valid."""
    if not token or not signature:
        return False
    pairs = list(_pairs(params))
    given = signature.strip().encode("ascii", "replace")
    matches = [hmac.compare_digest(twilio_signature(candidate, pairs, token).encode("ascii"), given)
               for candidate in _with_and_without_port(url)]
    return any(matches)


def parse_twilio_form(body: bytes) -> list[tuple[str, str]]:
    """The (name, value) pairs of Twilio's form body, blank values kept: the signature
    covers every parameter Twilio sent. Raises ValueError on a body that is not UTF-8."""
    return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)


def _pairs(params: Params) -> Iterable[tuple[str, str]]:
    if isinstance(params, Mapping):
        for name, value in params.items():
            if isinstance(value, str):
                yield name, value
            else:
                for item in value:
                    yield name, item
    else:
        yield from params


def _with_and_without_port(url: str) -> list[str]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = userinfo + "@" if userinfo else ""
    default = _DEFAULT_PORTS.get(parts.scheme)
    without = urlunsplit(parts._replace(netloc=prefix + host))
    port = parts.port if parts.port is not None else default
    with_port = urlunsplit(parts._replace(netloc=f"{prefix}{host}:{port}")) if port is not None else url
    return list(dict.fromkeys([url, without, with_port]))


# ----------------------------------------------------------------------------- answer


@dataclass(frozen=True)
class InboundSms:
    """The parts of Twilio's inbound message webhook Encore acts on."""

    sender: str  # From: the customer's number (E.164)
    recipient: str  # To: the seller's number it was sent to
    body: str
    message_sid: str
    kind: ReplyKind | None


def read_inbound_sms(params: Params) -> InboundSms:
    """Twilio's inbound message parameters; raises ValueError when the sender is missing.
    Only `From` is acted on (`To` and `MessageSid` are logged): a relay or a test client
    that sends fewer of Twilio's fields than Twilio does is still obeyed."""
    values: dict[str, str] = {}
    for name, value in _pairs(params):
        values.setdefault(name, value)
    if not values.get("From", "").strip():
        raise ValueError("From: required")
    body = values.get("Body", "")
    return InboundSms(sender=values["From"].strip(), recipient=values.get("To", "").strip(), body=body,
                      message_sid=values.get("MessageSid", "").strip(), kind=classify_reply(body))


def help_text(language: str, shop: str) -> str:
    """The localized answer to HELP, naming the shop (carriers require the brand and how
    to stop); STOP and START stay in English, the words carriers act on."""
    lang = language if language in LANGUAGES else DEFAULT_LANGUAGE
    return translations(lang)["help_line"].format(shop=shop.strip() or "Encore")


def twiml(message: str | None = None) -> str:
    """A TwiML answer: one reply message, or none (`<Response/>`: Twilio sends nothing)."""
    head = '<?xml version="1.0" encoding="UTF-8"?>'
    if message is None:
        return head + "<Response/>"
    return f"{head}<Response><Message>{escape(_NOT_XML.sub('', message))}</Message></Response>"
