"""The one place Encore talks to Apprise: `open_sender(channel, template).send(...)`.

A sender takes an address and a rendered Message and returns a SendResult; it
raises nothing a caller must handle. Everything Apprise-specific stays here:
filling the URL template, avoiding Apprise's per-message SMTP reconnect and its
throttle sleep, reading its per-call logs, and a short in-call retry for blips.

Retries live in two places only: this short in-call retry (a refused or reset
connection, at most 2 extra tries within ~3 s, each first asking the caller's
`may_attempt`: deadline, quiet hours, lease) and Encore's own backoff through
`next_attempt_at` (SPEC rule 12). Apprise's own `retry=` is forced to 0.
"""

from __future__ import annotations

import functools
import logging
import random
import re
import string
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote

import apprise
from apprise.plugins import N_MGR
from apprise.utils.parse import GET_SCHEMA_RE, is_email

from coupons.model import ADDRESS_FIELD, CHANNELS, Message
from coupons.errors import ConfigError
from coupons.privacy import mask_personal_data

from . import http_headers
from .classify import SendResult, classify_apprise_log, read_by_classification
from .smtp import SmtpCheckError, SmtpConnection, SmtpSettings, check_smtp

__all__ = [
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

# Apprise's per-service deadline. 0 runs the plugin inline (no thread hop, and a
# Celery soft time limit lands in our thread); the plugins' own socket timeouts
# (4 s for HTTP, 15 s for SMTP) and the task's time limits bound a send instead.
APPRISE_SERVICE_TIMEOUT = 0

# Addresses used to check a template at start. They must look real enough for
# Apprise's own validation (LINE user ids are "U" + 32 hex).
SAMPLE_ADDRESS: dict[str, str] = {
    "email": "sample@example.com",
    "sms": "+15551234567",
    "whatsapp": "+15551234567",
    "line": "U0123456789abcdef0123456789abcdef",
    "telegram": "123456789",
}

EMAIL_SCHEMES = ("mailto", "mailtos")

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class ChannelConfigError(ConfigError, ValueError):
    """A channel template Encore cannot use; the message names the setting."""


def setting_name(channel: str) -> str:
    """The environment variable that holds `channel`'s template."""
    return f"ENCORE_CHANNEL_{channel.upper()}"


def fill_template(template: str, address: str) -> str:
    """Put the percent-encoded address in place of the template's placeholder."""
    encoded = quote(address, safe="")
    return _PLACEHOLDER.sub(
        lambda m: encoded if m.group(1) in ADDRESS_FIELD.values() else m.group(0),
        template,
    )


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
        except _PASS_THROUGH:
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
        self._redact = _redactor(template)
        self._asset = _asset()
        with _apprise_debug_logs:
            self._template = _parsed_template(channel, template)
            # One wrapper per sender, emptied after each message: building one costs
            # as much as a send's own bookkeeping (it loads Apprise's locale).
            self._notifier = apprise.Apprise(asset=self._asset)
        # The plugins call `requests` without a session; this one keeps the slot's
        # connection alive between messages (http_headers.keep_alive).
        self._http = http_headers.new_keep_alive_session()

    def close(self) -> None:
        self._http.close()

    def _send_once(self, address: str, message: Message) -> SendResult:
        with _apprise_debug_logs, http_headers.keep_alive(self._http):
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


def _pass_through() -> tuple[type[BaseException], ...]:
    """Celery's control-flow exceptions derive from Exception; never swallow them."""
    found: list[type[BaseException]] = []
    try:
        from billiard.exceptions import SoftTimeLimitExceeded, Terminated, TimeLimitExceeded

        found += [SoftTimeLimitExceeded, TimeLimitExceeded, Terminated]
    except ImportError:
        pass
    try:
        from celery.exceptions import Ignore, Reject, Retry

        found += [Retry, Ignore, Reject]
    except ImportError:
        pass
    return tuple(found)


_PASS_THROUGH = _pass_through()


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
    placeholders = _PLACEHOLDER.findall(template)
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
    with _apprise_debug_logs, apprise.LogCapture(level=logging.WARNING) as captured:
        plugin = apprise.Apprise.instantiate(fill_template(template, sample), asset=_asset())
    if plugin is None:
        why = _redactor(template)(_last_line(captured.getvalue()))
        raise ChannelConfigError(
            f"{name}: Apprise cannot use this URL"
            + (f" ({why})" if why else " (unknown scheme or invalid arguments)")
        )
    if _scheme(template) in EMAIL_SCHEMES:
        targets = [addr for _, addr in getattr(plugin, "targets", [])]
        if targets != [sample] or plugin.cc or plugin.bcc:
            raise ChannelConfigError(
                f"{name}: {{{field}}} must be the only recipient (to=, no cc/bcc)"
            )
    return plugin


def _instantiate(url: str, asset: apprise.AppriseAsset):
    """`Apprise.instantiate(url)` without the work it does only for its own DEBUG lines.

    instantiate() renders the URL twice for log lines nobody reads here (a
    CWE-312-masked copy before parsing, and `plugin.url()` after): ~85% of its
    cost. Same steps otherwise: the plugin's own parse_url, then _construct.
    Schemes that only a plugin's native-URL parser knows go through
    instantiate() itself.
    """
    results = _parse(url)
    if results is _NOT_OURS:
        return apprise.Apprise.instantiate(url, asset=asset)
    return _construct(results, asset) if results else None


_NOT_OURS: dict = {}


def _parse(url: str) -> dict | None:
    """The plugin's parse_url result as instantiate() gets it; _NOT_OURS for a
    scheme no plugin registers (native URLs)."""
    url = url.replace("/#", "/%23")
    match = GET_SCHEMA_RE.match(url)
    schema = match.group("schema").lower() if match else ""
    if schema not in N_MGR:
        return _NOT_OURS
    return N_MGR[schema].parse_url(url) or None


def _construct(results: dict, asset: apprise.AppriseAsset):
    """instantiate()'s checks around the constructor: the plugin's class enabled,
    constructor errors and a plugin its constructor disabled give None."""
    plugin_class = N_MGR[results["schema"]]
    if not plugin_class.enabled:
        return None
    results["tag"] = set()
    results["asset"] = asset
    try:
        plugin = plugin_class(**results)
    except _PASS_THROUGH:
        raise
    except Exception:  # noqa: BLE001 - as instantiate(): unusable arguments
        return None
    return plugin if plugin.enabled else None


class _ParsedTemplate:
    """A channel template parsed once; per message only the recipient changes.

    The template is parsed with an alphanumeric sentinel in place of the address;
    a message's plugin arguments are that parse with the sentinel replaced by the
    address (in every string, list, tuple, set and dict inside). That is taken
    only where it is proven to give what parsing the filled URL gives: at start,
    for probe addresses of the channel's shapes holding each character of
    FAST_CHARACTERS, and per message only for addresses made of those characters.
    Anything else (a plugin that transforms or re-encodes the recipient, a value
    type it cannot copy, a native URL, an address with other characters) is
    parsed from the filled URL as before.
    """

    SENTINEL = "Zq7EncoreRcptXw4"
    FAST_CHARACTERS = frozenset(string.ascii_letters + string.digits + "+-._@")
    PROBES = (
        "+15551234567", "15551234567", "+442071838750", "0123456789", "123456789",
        "-1001234567890", "@channel_name", "U0123456789abcdef0123456789abcdef",
        "ana.maria-lopez_99+coupons@mail.example.com", "a@b.co", "AbC", "x", "_", ".",
        "+", "-", "@", "a+b", "a-b", "a.b", "a_b", "a@b", "+a", "-a", ".a", "_a", "@a",
        "a+", "a-", "a.", "a_", "a@",
    )

    def __init__(self, channel: str, template: str) -> None:
        self._template = template
        self._arguments = self._proven_arguments(channel, template)

    @property
    def proven(self) -> bool:
        """Whether messages skip parsing (else each filled URL is parsed)."""
        return self._arguments is not None

    def plugin(self, address: str, asset: apprise.AppriseAsset):
        """A fresh plugin for `address`, or None where Apprise rejects it."""
        if self._arguments is not None and self.FAST_CHARACTERS.issuperset(address):
            return _construct(_substituted(self._arguments, self.SENTINEL, address), asset)
        return _instantiate(fill_template(self._template, address), asset)

    @classmethod
    def _proven_arguments(cls, channel: str, template: str) -> dict | None:
        if cls.SENTINEL in template:
            return None
        arguments = _parse(fill_template(template, cls.SENTINEL))
        if not arguments or arguments is _NOT_OURS or not _copyable(arguments):
            return None
        if _substituted(arguments, cls.SENTINEL, "") == arguments:
            return None  # the recipient is not where the sentinel can show it
        for probe in (SAMPLE_ADDRESS[channel], *cls.PROBES):
            if _parse(fill_template(template, probe)) != _substituted(arguments, cls.SENTINEL, probe):
                return None
        return arguments


@functools.lru_cache(maxsize=64)
def _parsed_template(channel: str, template: str) -> _ParsedTemplate:
    """Once per process and template: proving the parse costs ~70 parses."""
    return _ParsedTemplate(channel, template)


_COPIED_LEAVES = (int, float, bool, bytes, type(None))


def _copyable(value: Any) -> bool:
    """Whether `_substituted` rebuilds every container in `value` (exact types only)."""
    if type(value) in (str, *_COPIED_LEAVES):
        return True
    if type(value) in (list, tuple, set, frozenset):
        return all(_copyable(item) for item in value)
    if type(value) is dict:
        return all(_copyable(k) and _copyable(v) for k, v in value.items())
    return False


def _substituted(value: Any, sentinel: str, address: str) -> Any:
    """A fresh deep copy of `value` with `sentinel` replaced by `address` in every string."""
    kind = type(value)
    if kind is str:
        return value.replace(sentinel, address)
    if kind is dict:
        return {_substituted(k, sentinel, address): _substituted(v, sentinel, address)
                for k, v in value.items()}
    if kind in (list, tuple, set, frozenset):
        return kind(_substituted(item, sentinel, address) for item in value)
    return value


def _asset() -> apprise.AppriseAsset:
    return apprise.AppriseAsset(app_id="Encore", service_timeout=APPRISE_SERVICE_TIMEOUT)


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[-1].split(" - ", 2)[-1].strip()[:200]


_SECRET_RUN = re.compile(r"[A-Za-z0-9_\-+=~.]{16,}")
_USERINFO = re.compile(r"^[a-z0-9+.-]+://([^@/?#]+)@", re.IGNORECASE)


def _redactor(template: str) -> Callable[[str], str]:
    """Mask the template's credentials in text meant for logs and the database.

    Best effort: the URL's user and password, and every long token-like run in
    it (API keys, bot tokens). Hostnames and short path words stay readable.
    """
    secrets: set[str] = set()
    bare = _PLACEHOLDER.sub("", template)
    match = _USERINFO.match(bare)
    if match:
        for part in match.group(1).split(":"):
            if len(part) >= 4:
                secrets.update({part, unquote(part)})
    for run in _SECRET_RUN.findall(bare):
        if run.count(".") < 2:  # a dotted name is a hostname, not a token
            secrets.update({run, unquote(run)})
    ordered = sorted(secrets, key=len, reverse=True)

    def redact(text: str) -> str:
        for secret in ordered:
            text = text.replace(secret, "***")
        return text

    return redact


def _with_detail(result: SendResult, detail: str) -> SendResult:
    return SendResult(result.ok, result.transient, result.reason, detail, result.retry_after)


class _UnreadLinesFilter(logging.Filter):
    """Drop, in a thread inside `_apprise_debug_logs`, the Apprise records that
    classification never reads (channels.classify.read_by_classification).

    Apprise's per-call capture stores every record at the call's level, and each
    record is offered to the capture of every send in flight; most of them (our
    payload, the URL, timings) are only discarded by classify_apprise_log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING or not getattr(_thread_scope, "depth", 0):
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - malformed: let the capture report it as before
            return True
        return read_by_classification(record.levelname, message)


_thread_scope = threading.local()


class _DebugLogScope:
    """Let Apprise's DEBUG lines reach our per-call capture, and nowhere else.

    Timeouts show only at DEBUG ("Socket Exception: ... Read timed out"), so the
    apprise logger must be at DEBUG while a send runs. Those lines hold the
    recipient and the message (a coupon code), so while Encore lowers the level
    it also stops them propagating to the application's handlers, and drops in
    its own threads the lines classification does not read (_UnreadLinesFilter).
    Reference counted: concurrent sends in threads share one change, restored by
    the last. Only an explicit DEBUG level on the "apprise" logger itself (someone
    debugging Apprise) is left alone, filter included; a root logger at DEBUG is
    not enough.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: tuple[int, bool] | None = None
        self._filter = _UnreadLinesFilter()

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                logger = logging.getLogger(apprise.LOGGER_NAME)
                if logger.level == logging.NOTSET or logger.level > logging.DEBUG:
                    self._saved = (logger.level, logger.propagate)
                    logger.setLevel(logging.DEBUG)
                    logger.propagate = False
                    logger.addFilter(self._filter)
            self._depth += 1
        _thread_scope.depth = getattr(_thread_scope, "depth", 0) + 1

    def __exit__(self, *exc: object) -> None:
        _thread_scope.depth -= 1
        with self._lock:
            self._depth -= 1
            if self._depth == 0 and self._saved is not None:
                logger = logging.getLogger(apprise.LOGGER_NAME)
                logger.removeFilter(self._filter)
                logger.setLevel(self._saved[0])
                logger.propagate = self._saved[1]
                self._saved = None


_apprise_debug_logs = _DebugLogScope()
