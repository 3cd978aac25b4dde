"""The WhatsApp Cloud API sender: the seller's approved template, posted with `requests`.

Apprise's whatsapp:// plugin cannot send a coupon template (a body parameter per
value and a copy-code button, filled per message) and always posts to
graph.facebook.com; channels/WHATSAPP.md shows where. So this sender posts
`POST {api_url}/{version}/{phone-number-id}/messages` itself, behind the same
interface as the other senders (`send(address, message, may_attempt=...)` ->
SendResult, never raises), with one kept-alive session per sending slot
(channels.pool lends senders). The token and the phone-number id come from the
channel's Apprise URL, `whatsapp://TOKEN@PHONE_NUMBER_ID/{whatsapp}`, parsed and
checked by Apprise itself.

Meta's answers are classified by their error `code` (Meta asks clients to build on
codes, not on HTTP statuses or titles); the table and its sources are in
channels/WHATSAPP.md.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import apprise
import requests

from coupons.model import Message
from coupons.whatsapp import cloud_api_request, is_us_blocked

from . import http_headers
from .adapter import (
    IN_CALL_RETRIES,
    SAMPLE_ADDRESS,
    ChannelConfigError,
    ChannelSender,
    fill_template,
    setting_name,
    validate_channel_template,
)
from .classify import SendResult, _one_line

DEFAULT_API_URL = "https://graph.facebook.com"
# The Graph API version in the path. Pinned: Meta changes behaviour between versions
# and retires each about two years after its release.
GRAPH_API_VERSION = "v23.0"
# (connect, read) seconds: the connect bound is the Apprise plugins' 4 s; Meta answers
# in well under a second, and a slow answer is a transient failure the backoff retries.
TIMEOUT = (4.0, 10.0)

_E164 = re.compile(r"\+[1-9]\d{6,14}")
_PHONE_FORMATTING = re.compile(r"[\s\-().]")

# Meta's error code -> (transient, reason). Permanent moves the delivery to its next
# channel at once (SPEC rules 12 and 16): the template cannot be sent (paused,
# disabled, not approved or missing, parameters that do not fit), the number is not
# on WhatsApp, or the account itself is refused. Everything else is retried.
CLOUD_API_ERRORS: dict[int, tuple[bool, str]] = {
    # templates
    132015: (False, "whatsapp_template_paused"),
    132016: (False, "whatsapp_template_disabled"),
    132001: (False, "whatsapp_template_missing"),
    132000: (False, "whatsapp_template_mismatch"),
    132005: (False, "whatsapp_template_mismatch"),
    132007: (False, "whatsapp_template_mismatch"),
    132012: (False, "whatsapp_template_mismatch"),
    # the recipient
    131026: (False, "whatsapp_not_on_whatsapp"),
    # the account: nothing changes until the seller fixes it, and the customer's other
    # channels still work meanwhile
    0: (False, "whatsapp_auth"),
    10: (False, "whatsapp_auth"),
    190: (False, "whatsapp_auth"),
    368: (False, "whatsapp_account_restricted"),
    130497: (False, "whatsapp_account_restricted"),
    131031: (False, "whatsapp_account_restricted"),
    # the request (a new Meta rule, or a bug here): the same request would fail again
    33: (False, "whatsapp_bad_request"),
    100: (False, "whatsapp_bad_request"),
    2500: (False, "whatsapp_bad_request"),
    131008: (False, "whatsapp_bad_request"),
    131009: (False, "whatsapp_bad_request"),
    131051: (False, "whatsapp_bad_request"),
    # limits: later works
    4: (True, "rate_limited"),
    80007: (True, "rate_limited"),
    130429: (True, "rate_limited"),
    131056: (True, "rate_limited"),
    131048: (True, "whatsapp_spam_limited"),
    131049: (True, "whatsapp_marketing_limit"),
    131047: (True, "whatsapp_reengagement_required"),
    # Meta's side
    1: (True, "whatsapp_unavailable"),
    2: (True, "whatsapp_unavailable"),
    131000: (True, "whatsapp_unavailable"),
    131016: (True, "whatsapp_unavailable"),
}


@dataclass(frozen=True)
class CloudApiAccount:
    """What the channel URL says about the seller's WhatsApp Business number."""

    token: str
    phone_number_id: str

    def __repr__(self) -> str:  # the token never reaches a log line
        return f"CloudApiAccount(phone_number_id={self.phone_number_id!r})"


def is_cloud_api_template(template: str) -> bool:
    """Whether a channel template names the Cloud API (Apprise's whatsapp:// form);
    any other URL, such as a gateway of the seller's own, goes through Apprise."""
    return template.partition("://")[0].strip().lower() == "whatsapp"


def parse_cloud_api_template(template: str) -> CloudApiAccount:
    """The token and phone-number id of `whatsapp://TOKEN@PHONE_NUMBER_ID/{whatsapp}`
    (also `whatsapp://TEMPLATE:TOKEN@ID/...`, `?token=`, `?from=`), as Apprise parses
    and checks them. Apprise's own template= and lang= are not used: the templates
    file names a template per language. Raises ChannelConfigError naming the setting."""
    name = setting_name("whatsapp")
    if not is_cloud_api_template(template):
        raise ChannelConfigError(f"{name}: not a whatsapp:// URL")
    validate_channel_template("whatsapp", template)
    plugin: Any = apprise.Apprise.instantiate(fill_template(template, SAMPLE_ADDRESS["whatsapp"]))
    if plugin is None:  # validate_channel_template made the same call
        raise ChannelConfigError(f"{name}: Apprise cannot use this URL")
    if list(plugin.targets) != [SAMPLE_ADDRESS["whatsapp"]]:
        raise ChannelConfigError(f"{name}: {{whatsapp}} must be the only recipient")
    return CloudApiAccount(token=plugin.token, phone_number_id=plugin.from_phone_id)


class WhatsAppCloudSender(ChannelSender):
    """Sends coupon templates through the Cloud API over one kept-alive connection.

    Not thread-safe: one sender per sending slot, as every ChannelSender."""

    def __init__(
        self,
        template: str,
        *,
        api_url: str = DEFAULT_API_URL,
        version: str = GRAPH_API_VERSION,
        timeout: tuple[float, float] = TIMEOUT,
        in_call_retries: int = IN_CALL_RETRIES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__("whatsapp", in_call_retries=in_call_retries, sleep=sleep)
        self.account = parse_cloud_api_template(template)
        self._url = f"{api_url.rstrip('/')}/{version}/{self.account.phone_number_id}/messages"
        self._timeout = timeout
        self._headers = {
            "Authorization": f"Bearer {self.account.token}",
            "Accept": "application/json",
        }
        self._session = http_headers.new_keep_alive_session()

    def close(self) -> None:
        self._session.close()

    def _send_once(self, address: str, message: Message) -> SendResult:
        number = _PHONE_FORMATTING.sub("", address)
        if not _E164.fullmatch(number):
            return SendResult(False, False, "invalid_address", "not an E.164 phone number")
        if is_us_blocked(number):
            return SendResult(False, False, "whatsapp_us_blocked",
                              "Meta delivers no marketing template to +1 numbers")
        if message.whatsapp_template is None:
            return SendResult(False, False, "whatsapp_no_template",
                              "the Cloud API takes only approved templates outside a conversation")
        try:
            response = self._session.post(
                self._url,
                json=cloud_api_request(message.whatsapp_template, number),
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.Timeout as error:
            return SendResult(False, True, "timeout", self._redacted(f"{type(error).__name__}: {error}"))
        except requests.ConnectionError as error:
            return SendResult(False, True, "connection", self._redacted(f"{type(error).__name__}: {error}"))
        except requests.RequestException as error:
            return SendResult(False, True, "unknown", self._redacted(f"{type(error).__name__}: {error}"))
        with response:
            outcome = classify_cloud_api_answer(response.status_code, response.content,
                                                response.headers.get("Retry-After"))
        return SendResult(outcome.ok, outcome.transient, outcome.reason, self._redacted(outcome.detail),
                          outcome.retry_after)

    def _redacted(self, text: str) -> str:
        return text.replace(self.account.token, "***") if self.account.token else text


def classify_cloud_api_answer(status: int, payload: bytes, retry_after: str | None = None) -> SendResult:
    """One answer of the messages endpoint as a SendResult: by Meta's error `code`
    when the body is Meta's error object, else by the HTTP status (5xx, 408, 429
    transient; 401 and 403 the account; other 4xx permanent)."""
    body = _json(payload)
    if 200 <= status < 300:
        messages = body.get("messages") if isinstance(body, dict) else None
        message_id = messages[0].get("id") if isinstance(messages, list) and messages and isinstance(
            messages[0], dict) else None
        return SendResult(True, False, "sent", message_id if isinstance(message_id, str) else "")
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if type(code) is int:
        assert isinstance(error, dict)
        transient, reason = _by_code(code, status)
        detail = _one_line(f"{error.get('message') or f'(#{code})'}: {_details(error)}".rstrip(": "))
    else:
        transient = status >= 500 or status in (408, 429)
        reason = "whatsapp_auth" if status in (401, 403) else f"http_{status}"
        detail = _one_line(f"HTTP {status}: {payload[:200].decode('utf-8', 'replace')}".rstrip(": "))
    wait = http_headers.retry_after_seconds(retry_after) if transient else None
    return SendResult(False, transient, reason, detail, wait)


def _by_code(code: int, status: int) -> tuple[bool, str]:
    if code in CLOUD_API_ERRORS:
        return CLOUD_API_ERRORS[code]
    if 200 <= code <= 299:  # Graph API permission errors
        return False, "whatsapp_auth"
    transient = status >= 500 or status in (408, 429)
    return transient, f"whatsapp_error_{code}"


def _details(error: dict[str, Any]) -> str:
    data = error.get("error_data")
    if isinstance(data, dict) and isinstance(data.get("details"), str):
        return data["details"]
    return data if isinstance(data, str) else ""


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload or b"null")
    except ValueError:
        return None
