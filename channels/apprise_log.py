"""Apprise's log lines, read safely: its DEBUG lines reach only the per-call capture
that classifies a send (never the application's handlers: they hold the recipient and
the coupon code), and provider text is cleared of the template's credentials."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from urllib.parse import unquote

import apprise

from .apprise_urls import PLACEHOLDER
from .classify import read_by_classification


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    return lines[-1].split(" - ", 2)[-1].strip()[:200]


_SECRET_RUN = re.compile(r"[A-Za-z0-9_\-+=~.]{16,}")
_USERINFO = re.compile(r"^[a-z0-9+.-]+://([^@/?#]+)@", re.IGNORECASE)


def redactor(template: str) -> Callable[[str], str]:
    """Mask the template's credentials in text meant for logs and the database.

    Best effort: the URL's user and password, and every long token-like run in
    it (API keys, bot tokens). Hostnames and short path words stay readable.
    """
    secrets: set[str] = set()
    bare = PLACEHOLDER.sub("", template)
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


class _UnreadLinesFilter(logging.Filter):
    """Drop, in a thread inside `apprise_debug_logs`, the Apprise records that
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


apprise_debug_logs = _DebugLogScope()
