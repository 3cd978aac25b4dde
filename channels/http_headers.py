"""Two hooks into `requests` under Apprise's HTTP plugins, both scoped to our own
send call in the current thread; every other use of `requests` is untouched.

- Retry-After: Apprise's HTTP plugins call `requests` and log only the status
  code, so the header that tells us when to come back (rule 12, 429/503) is
  lost. `requests.Session.send` is wrapped once; the wrapper records the last
  response's status and Retry-After for the current thread while a `capture()`
  is open.
- Keep-alive: the plugins call `requests.request` / `requests.post` without a
  session, so each message paid a new TCP (and TLS) handshake. While a
  `keep_alive(session)` is open, those module-level calls made in this thread go
  through `session` instead, so one sending slot reuses its connection. That
  session (`new_keep_alive_session`) reads proxies, CA bundle and netrc from the
  environment once rather than per request.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.request import getproxies

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

        requests.Session.send = send  # type: ignore[method-assign]
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


def new_keep_alive_session() -> requests.Session:
    """A session for one sending slot: connections kept, cookies never (one
    recipient's response must not shape the next recipient's request)."""
    from http.cookiejar import DefaultCookiePolicy

    session = _SlotSession()
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return session


class _SlotSession(requests.Session):
    """A Session that reads the environment once instead of on every request.

    With `trust_env` requests looks for proxies (scanning the whole environment
    twice), a CA bundle and a netrc file per request: ~8% of a send's CPU. When
    the process has no proxy settings and no netrc file, the CA bundle is the
    only thing it could take from there; this session applies it as requests
    would (to `verify=True` or unset) and turns the per-request look-ups off.
    Otherwise it behaves as a plain Session.
    """

    def __init__(self) -> None:
        super().__init__()
        self._ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if not getproxies() and not _netrc_file():
            self.trust_env = False

    def request(self, method, url, *args, **kwargs):
        verify = kwargs.get("verify")
        if not self.trust_env and self._ca_bundle and not args and (verify is True or verify is None):
            kwargs["verify"] = self._ca_bundle
        return super().request(method, url, *args, **kwargs)


def _netrc_file() -> str | None:
    """The netrc file requests would read (requests.utils.get_netrc_auth), if any."""
    from requests.utils import NETRC_FILES

    chosen = os.environ.get("NETRC")
    places = [chosen] if chosen is not None else [f"~/{name}" for name in NETRC_FILES]
    for place in places:
        if os.path.exists(os.path.expanduser(place)):
            return place
    return None


_keep_alive_installed = False


def _install_keep_alive() -> None:
    """Route `requests.request` and the `requests.api` helpers (`post`, `get`, ...,
    which call `requests.api.request`) through the thread's session, if one is set."""
    global _keep_alive_installed
    with _install_lock:
        if _keep_alive_installed:
            return
        import requests.api

        original = requests.api.request

        def request(method, url, **kwargs):
            session = getattr(_local, "session", None)
            if session is None:
                return original(method, url, **kwargs)
            return session.request(method=method, url=url, **kwargs)

        requests.api.request = request
        requests.request = request
        _keep_alive_installed = True


@contextmanager
def keep_alive(session: requests.Session) -> Iterator[requests.Session]:
    """Within this block, this thread's plain `requests.*` calls use `session`."""
    _install_keep_alive()
    previous = getattr(_local, "session", None)
    _local.session = session
    try:
        yield session
    finally:
        _local.session = previous


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
