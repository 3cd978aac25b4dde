"""Read a provider's Retry-After header, which Apprise never exposes.

Apprise's HTTP plugins call `requests` and log only the status code, so the
header that tells us when to come back (rule 12, 429/503) is lost. This module
wraps `requests.Session.send` once; the wrapper records the last response's
status and Retry-After for the current thread, and only while a `capture()` is
open — every other use of `requests` is untouched.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests

_local = threading.local()
_install_lock = threading.Lock()
_installed = False


class ResponseHeaders:
    def __init__(self) -> None:
        self.status: int | None = None
        self.retry_after: str | None = None


def _install() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        original = requests.Session.send

        def send(self, request, **kwargs):
            response = original(self, request, **kwargs)
            recorder = getattr(_local, "recorder", None)
            if recorder is not None:
                recorder.status = response.status_code
                recorder.retry_after = response.headers.get("Retry-After")
            return response

        requests.Session.send = send
        _installed = True


@contextmanager
def capture() -> Iterator[ResponseHeaders]:
    _install()
    recorder = ResponseHeaders()
    _local.recorder = recorder
    try:
        yield recorder
    finally:
        _local.recorder = None


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After value: delta-seconds or an HTTP date; None if unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
