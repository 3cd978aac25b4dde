"""The one place Encore talks to Apprise: `open_sender(channel, template).send(...)`.

A sender takes an address and a rendered Message and returns a SendResult; it
raises nothing a caller must handle. Everything Apprise-specific stays in this
package: here, avoiding Apprise's per-message SMTP reconnect and its throttle sleep,
and a short in-call retry for blips; filling and parsing URL templates in
`apprise_urls.py`; reading its per-call logs without leaking them in `apprise_log.py`.

Retries live in two places only: this short in-call retry (a refused or reset
connection, at most 2 extra tries within ~3 s, each first asking the caller's
`may_attempt`: deadline, quiet hours, lease) and Encore's own backoff through
`next_attempt_at` (SPEC rule 12). Apprise's own `retry=` is forced to 0.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from functools import lru_cache
from types import TracebackType

import apprise
from apprise.utils.parse import is_email

from coupons.model import ADDRESS_FIELD, CHANNELS, Message
from coupons.errors import ConfigError
from coupons.privacy import mask_personal_data

from . import http_headers
from .apprise_log import apprise_debug_logs, last_line, redactor
from .apprise_urls import PASS_THROUGH, PLACEHOLDER, SAMPLE_ADDRESS, fill_template, new_asset, parsed_template
from .classify import SendResult, classify_apprise_log
from .smtp import SmtpCheckError, SmtpConnection, SmtpSettings, check_smtp

__all__ = [
    "SAMPLE_ADDRESS",
    "ChannelConfigError",
    "ChannelSender",
    "SendResult",
    "SmtpCheckError",
    "check_channel",
    "fill_template",
    "open_sender",
    "setting_name",
    "validate_channel_template",
]

log = logging.getLogger(__name__)

# In-call retry for connection blips only. 2 extra tries within 3 s keeps a
# batch of 100 moving even when every send blips once; anything longer belongs
# to the outer backoff, which frees the worker meanwhile.
IN_CALL_RETRIES = 2
IN_CALL_BUDGET_SECONDS = 3.0
IN_CALL_RETRY_REASONS = frozenset({"connection", "timeout"})
IN_CALL_FIRST_WAIT_SECONDS = 0.1
IN_CALL_MAX_WAIT_SECONDS = 1.0
IN_CALL_JITTER_SECONDS = 0.1

EMAIL_SCHEMES = ("mailto", "mailtos")



class ChannelConfigError(ConfigError, ValueError):
    """A channel template Encore cannot use; the message names the setting."""


def setting_name(channel: str) -> str:
    """The environment variable that holds `channel`'s template."""
    return f"ENCORE_CHANNEL_{channel.upper()}"


def validate_channel_template(channel: str, template: str) -> None:
    """Fail at start, naming the setting, when a template cannot work."""
    _load_template(channel, template)


def check_channel(channel: str, template: str) -> str:
    """`encore check` for one channel: the template is valid and, for email, its SMTP
    server answers a session opened as sending opens one (`channels.smtp.check_smtp`:
    TLS and AUTH as the URL says, then QUIT; nothing sent). Raises ChannelConfigError for
    a template, SmtpCheckError (naming the template's scheme) for a server."""
    plugin = _load_template(channel, template)
    valid = f"{_scheme(template)}:// template is valid"
    if _scheme(template) not in EMAIL_SCHEMES:
        return valid
    try:
        return f"{valid}; {check_smtp(SmtpSettings.from_apprise(plugin))}"
    except SmtpCheckError as error:
        raise SmtpCheckError(f"{valid}, but {error}") from None


@lru_cache(maxsize=8)
def email_sender_domain(template: str) -> str | None:
    """The domain of the From address an email channel sends as (for its Message-IDs,
    SPEC rule 19), or None when the template's plugin does not say."""
    try:
        plugin = _load_template("email", template)
    except ChannelConfigError:
        return None
    sender = getattr(plugin, "from_addr", None) or getattr(plugin, "from_email", None)
    if isinstance(sender, (tuple, list)) and sender:
        sender = sender[-1]
    if not isinstance(sender, str) or "@" not in sender:
        return None
    return sender.rpartition("@")[2].strip().lower() or None


class ChannelSender:
    """Sends one channel's messages over its own connection; use as a context manager.

    Not thread-safe: one sender per sending slot (channels.pool lends them), used by
    one thread at a time; it keeps its connection between messages and batches.
    """

    def __init__(
        self,
        channel: str,
        *,
        in_call_retries: int = IN_CALL_RETRIES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.channel = channel
        self._in_call_retries = max(0, in_call_retries)
        self._sleep = sleep

    def send(self, address: str, message: Message, *,
             may_attempt: Callable[[], bool] | None = None) -> SendResult:
        """Deliver one message. Never raises, except Celery's control-flow signals.

        `may_attempt` is asked right before each in-call retry (after its wait): the
        caller's deadline, quiet hours or lease may have run out meanwhile, and then
        the last answer is returned instead of trying again.

        Every provider answer enters Encore here, so this is where its text is cleared
        of customer data (`coupons.privacy`: addresses, numbers, the recipient) before
        anything stores or logs it."""
        if not address or not address.strip():
            return SendResult(False, False, "invalid_address", "no address")
        started = time.monotonic()
        result = self._guarded(address, message)
        for retry in range(self._in_call_retries):
            if not _worth_retrying_now(result):
                break
            wait = min(IN_CALL_FIRST_WAIT_SECONDS * 2**retry + random.uniform(0, IN_CALL_JITTER_SECONDS),
                       IN_CALL_MAX_WAIT_SECONDS)
            if time.monotonic() - started + wait > IN_CALL_BUDGET_SECONDS:
                break
            self._sleep(wait)
            if may_attempt is not None and not may_attempt():
                break
            result = self._guarded(address, message)
        if result.detail:
            result = _with_detail(result, mask_personal_data(result.detail, known=(address,)))
        return result

    def close(self) -> None:
        """Release the batch's connection, if any."""

    def __enter__(self) -> ChannelSender:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _guarded(self, address: str, message: Message) -> SendResult:
        try:
            return self._send_once(address, message)
        except PASS_THROUGH:
            raise
        except Exception as error:  # noqa: BLE001 - a send must not kill a batch
            # The error's text may quote the recipient: masked in the line, the traceback at DEBUG.
            log.error("unexpected error sending %s: %s", self.channel,
                      mask_personal_data(f"{type(error).__name__}: {error}", known=(address,))[:300])
            log.debug("unexpected error sending %s", self.channel, exc_info=True)
            return SendResult(False, True, "unknown", f"{type(error).__name__} in sender")

    def _send_once(self, address: str, message: Message) -> SendResult:
        raise NotImplementedError


class _SmtpSender(ChannelSender):
    """mailto:// and mailtos://: Apprise parses the URL, smtplib keeps the session."""

    def __init__(self, channel: str, settings: SmtpSettings, **kwargs) -> None:
        super().__init__(channel, **kwargs)
        self._connection = SmtpConnection(settings)

    @property
    def connections_opened(self) -> int:
        return self._connection.connections_opened

    def _send_once(self, address: str, message: Message) -> SendResult:
        # validate_channel_template made sure the placeholder is the only To:
        # target, so the recipient is the address as Apprise would parse it.
        parsed = is_email(address)
        if not parsed:
            return SendResult(False, False, "invalid_address", "not an email address")
        return self._connection.send(parsed["full_email"], message)

    def close(self) -> None:
        self._connection.close()


class _AppriseSender(ChannelSender):
    """Every other scheme: one fresh Apprise plugin per message, one kept-alive
    HTTP session per sender.

    Fresh per message because the recipient is part of the URL; a fresh plugin
    also never sleeps in Apprise's throttle (it only sleeps between two sends of
    the same object), and request_rate_per_sec is zeroed anyway: Encore paces
    sends with channels.ratelimit, shared by every worker.
    """

    def __init__(self, channel: str, template: str, **kwargs) -> None:
        super().__init__(channel, **kwargs)
        self._redact = redactor(template)
        self._asset = new_asset()
        with apprise_debug_logs:
            self._template = parsed_template(channel, template)
            # One wrapper per sender, emptied after each message: building one costs
            # as much as a send's own bookkeeping (it loads Apprise's locale).
            self._notifier = apprise.Apprise(asset=self._asset)
        # The plugins call `requests` without a session; this one keeps the slot's
        # connection alive between messages (http_headers.keep_alive).
        self._http = http_headers.new_keep_alive_session()

    def close(self) -> None:
        self._http.close()

    def _send_once(self, address: str, message: Message) -> SendResult:
        with apprise_debug_logs, http_headers.keep_alive(self._http):
            plugin = self._template.plugin(address, self._asset)
            if plugin is None:
                # The template loaded with a sample address, so this one is the cause.
                return SendResult(False, False, "invalid_address", "Apprise rejected the recipient")
            plugin.request_rate_per_sec = 0
            plugin.retry = 0
            if message.headers and isinstance(getattr(plugin, "headers", None), dict):
                # Email plugins that take custom headers (SMTP via Apprise, Mailgun, ...)
                # carry List-Unsubscribe too; a fresh plugin per message, so no leak.
                plugin.headers.update(dict(message.headers))
            notifier = self._notifier
            notifier.add(plugin)
            if self.channel == "email" and message.html:
                body, body_format = message.html, apprise.NotifyFormat.HTML
            else:
                body, body_format = message.text, apprise.NotifyFormat.TEXT
            try:
                with http_headers.capture() as response:
                    result = notifier.notify(
                        body=body,
                        title=message.subject or "",
                        body_format=body_format,
                        log_level=logging.DEBUG,
                    )
            finally:
                notifier.clear()
            try:
                ok = bool(result)
                timed_out = result.status == apprise.AppriseResultStatus.TIMEOUT
                # A success is "sent" whatever its log says: read the log only on failure.
                log_text = "" if ok else "\n".join(f"{e.level} - {e.message}" for e in result.logs())
            finally:
                result.close()
        if timed_out:
            outcome = SendResult(False, True, "timeout", "Apprise stopped waiting for the provider")
        else:
            outcome = classify_apprise_log(ok, log_text)
        header_wait = http_headers.retry_after_seconds(response.retry_after)
        if outcome.transient and header_wait is not None:
            outcome = SendResult(outcome.ok, outcome.transient, outcome.reason, outcome.detail,
                                 max(header_wait, outcome.retry_after or 0.0))
        if outcome.detail:
            outcome = _with_detail(outcome, self._redact(outcome.detail))
        return outcome


def open_sender(
    channel: str,
    template: str,
    *,
    in_call_retries: int = IN_CALL_RETRIES,
    sleep: Callable[[float], None] = time.sleep,
) -> ChannelSender:
    """A sender for one batch of `channel` messages; raises ChannelConfigError."""
    plugin = _load_template(channel, template)
    if _scheme(template) in EMAIL_SCHEMES:
        return _SmtpSender(
            channel,
            SmtpSettings.from_apprise(plugin),
            in_call_retries=in_call_retries,
            sleep=sleep,
        )
    return _AppriseSender(channel, template, in_call_retries=in_call_retries, sleep=sleep)


# --------------------------------------------------------------------------- helpers


def _worth_retrying_now(result: SendResult) -> bool:
    return result.transient and result.reason in IN_CALL_RETRY_REASONS


def _scheme(template: str) -> str:
    return template.partition("://")[0].strip().lower()


def _load_template(channel: str, template: str):
    """Check a template with a sample address; return the Apprise plugin it makes."""
    if channel not in CHANNELS:
        raise ChannelConfigError(f"unknown channel {channel!r}; known: {', '.join(CHANNELS)}")
    name = setting_name(channel)
    field = ADDRESS_FIELD[channel]
    if not template or "://" not in template:
        raise ChannelConfigError(f"{name}: not an Apprise URL (scheme://...)")
    placeholders = PLACEHOLDER.findall(template)
    if placeholders.count(field) != 1:
        raise ChannelConfigError(
            f"{name}: the template must hold the placeholder {{{field}}} exactly once"
        )
    others = sorted(set(placeholders) - {field})
    if others:
        raise ChannelConfigError(
            f"{name}: unexpected placeholder(s) {', '.join('{' + p + '}' for p in others)};"
            f" this channel's recipient is {{{field}}}"
        )
    sample = SAMPLE_ADDRESS[channel]
    with apprise_debug_logs, apprise.LogCapture(level=logging.WARNING) as captured:
        plugin = apprise.Apprise.instantiate(fill_template(template, sample), asset=new_asset())
    if plugin is None:
        why = redactor(template)(last_line(captured.getvalue()))
        raise ChannelConfigError(
            f"{name}: Apprise cannot use this URL"
            + (f" ({why})" if why else " (unknown scheme or invalid arguments)")
        )
    if _scheme(template) in EMAIL_SCHEMES:
        targets = [addr for _, addr in getattr(plugin, "targets", [])]
        if targets != [sample] or getattr(plugin, "cc", None) or getattr(plugin, "bcc", None):
            raise ChannelConfigError(
                f"{name}: {{{field}}} must be the only recipient (to=, no cc/bcc)"
            )
    return plugin


def _with_detail(result: SendResult, detail: str) -> SendResult:
    return SendResult(result.ok, result.transient, result.reason, detail, result.retry_after)
