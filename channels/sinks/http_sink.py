"""Local stand-ins for providers: a real SMTP server and a real HTTP endpoint.

The demo and the tests deliver through real Apprise and real sockets to these,
so what they check is what production would do, minus the provider. They live
in the package (not under tests/) because the demo and the benchmarks use them.

Run alone for benchmarks (counts messages, prints the count on SIGTERM/SIGINT):
    python -m channels.sinks smtp --port 2525
    python -m channels.sinks http --port 9100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

LOCALHOST = "127.0.0.1"


class _Collector:
    """A list guarded by a Condition, so tests await a count instead of sleeping."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._changed = threading.Condition()

    def add(self, item: Any) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    def snapshot(self) -> list[Any]:
        with self._changed:
            return list(self._items)

    def clear(self) -> None:
        with self._changed:
            self._items.clear()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: len(self._items) >= count, timeout)


# --------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class ReceivedEmail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage


class _SmtpHandler:
    """aiosmtpd hooks: refuse chosen recipients, parse and keep the rest."""

    def __init__(self, sink: SmtpSink, parse: bool = True) -> None:
        self._sink: SmtpSink = sink
        self._parse = parse

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self._sink._count_session()
        if self._sink.pipelining:
            # aiosmtpd reads one command line at a time, so pipelined commands just work.
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        session.host_name = hostname
        self._sink._count_session()
        return f"250 {server.hostname}"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self._sink.rcpt_delay or self._sink.rcpt_held:
            # A slow provider, before anything is accepted: a client killed now
            # leaves no message behind (crash tests rely on this).
            self._sink.waiting_in_rcpt += 1
            self._sink.peak_waiting_in_rcpt = max(self._sink.peak_waiting_in_rcpt, self._sink.waiting_in_rcpt)
            try:
                await asyncio.sleep(self._sink.rcpt_delay)
                while self._sink.rcpt_held:
                    await asyncio.sleep(0.01)
            finally:
                self._sink.waiting_in_rcpt -= 1
        refusal = self._sink._refusals.get(address.lower()) or self._sink._refusing_everyone
        if refusal is not None:
            code, text = refusal
            return f"{code} {text}"
        envelope.rcpt_tos.append(address)
        self._sink.past_rcpt.add(id(session))
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self._sink.past_rcpt.discard(id(session))
        if self._parse:
            message = BytesParser(policy=policy.default).parsebytes(envelope.content)
            self._sink._received.add(
                ReceivedEmail(envelope.mail_from, tuple(envelope.rcpt_tos), message)
            )
        else:
            self._sink._received.add(None)
        return "250 Message accepted for delivery"


class _Authenticator:
    """aiosmtpd's authenticator hook: one user and password, as a relay's account."""

    def __init__(self, user: str, password: str) -> None:
        self._expected = (user.encode(), password.encode())

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        given = (auth_data.login, auth_data.password) if isinstance(auth_data, LoginPassword) else None
        if given == self._expected:
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)  # aiosmtpd answers 535 5.7.8


class _SmtpController(Controller):
    """aiosmtpd's Controller on a free port (port 0), tracking live sessions."""

    def __init__(self, handler: _SmtpHandler, hostname: str, **smtp_options: Any) -> None:
        super().__init__(handler, hostname=hostname, port=0, **smtp_options)
        self.live: set[SMTP] = set()

    def _create_server(self):
        async def create():
            server = await self.loop.create_server(
                self._factory_invoker, host=self.hostname, port=self.port
            )
            # The real port must be known before start() connects to trigger it.
            self.port = server.sockets[0].getsockname()[1]
            return server

        return create()

    def factory(self) -> SMTP:
        controller = self

        class _TrackedSMTP(SMTP):
            def connection_made(self, transport):
                super().connection_made(transport)
                controller.live.add(self)

            def connection_lost(self, error):
                controller.live.discard(self)
                if self.session is not None:
                    controller.handler._sink.past_rcpt.discard(id(self.session))
                super().connection_lost(error)

        return _TrackedSMTP(self.handler, **self.SMTP_kwargs)


class SmtpSink:
    """A real SMTP server on 127.0.0.1 that keeps what it receives.

    `messages` are parsed `EmailMessage`s with their envelope; `sessions` counts
    SMTP sessions (HELO/EHLO), which is how a test sees connection reuse.
    """

    def __init__(self, host: str = LOCALHOST, *, parse: bool = True, pipelining: bool = False,
                 credentials: tuple[str, str] | None = None) -> None:
        self._received = _Collector()
        self.pipelining = pipelining  # advertise RFC 2920 PIPELINING, as most real relays do
        self._refusals: dict[str, tuple[int, str]] = {}
        self._refusing_everyone: tuple[int, str] | None = None
        self.rcpt_delay = 0.0  # seconds the server waits before answering RCPT
        self.waiting_in_rcpt = 0  # clients held in that wait right now (event-loop thread writes)
        self.peak_waiting_in_rcpt = 0  # the most clients ever held there at once
        # While True, no recipient is accepted at all (also those already waiting out
        # rcpt_delay): the server accepts nothing new until it is released.
        self.rcpt_held = False
        # Sessions whose recipient was accepted and whose DATA is not answered yet: a
        # message that may still be accepted. Empty + every new RCPT held = nothing new
        # can be accepted (crash tests wait for that before they kill a worker).
        self.past_rcpt: set[int] = set()
        self._sessions = 0
        self._sessions_lock = threading.Lock()
        # With credentials, AUTH (PLAIN, LOGIN) is offered, on this plain local socket too,
        # and only that user and password are accepted: a relay that checks logins.
        options = {"authenticator": _Authenticator(*credentials), "auth_require_tls": False} if credentials else {}
        self._controller = _SmtpController(_SmtpHandler(self, parse=parse), host, **options)
        self.host = host

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._controller.port

    @property
    def received(self) -> list[ReceivedEmail]:
        return self._received.snapshot()

    @property
    def messages(self) -> list[EmailMessage]:
        return [item.message for item in self._received.snapshot()]

    @property
    def count(self) -> int:
        return len(self._received.snapshot())

    @property
    def all_clients_waiting_in_rcpt(self) -> bool:
        """True when every connected client is inside the RCPT delay: none of them has
        a message the server accepted but the client has not heard about."""
        return bool(self._controller.live) and self.waiting_in_rcpt == len(self._controller.live)

    @property
    def sessions(self) -> int:
        with self._sessions_lock:
            return self._sessions

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Block until `count` messages arrived; False on timeout."""
        return self._received.wait_for(count, timeout)

    def refuse(self, address: str, code: int = 550, text: str = "5.1.1 No such user") -> None:
        """Answer RCPT TO for `address` with `code` from now on (4xx or 5xx)."""
        self._refusals[address.lower()] = (code, text)

    def refuse_everyone(self, code: int = 451, text: str = "4.3.0 Temporary local problem, try again later") -> None:
        """Answer every RCPT TO with `code` until `accept_everyone`: a relay in an incident."""
        self._refusing_everyone = (code, text)

    def accept_everyone(self) -> None:
        """End `refuse_everyone` (addresses refused one by one with `refuse` stay refused)."""
        self._refusing_everyone = None

    def drop_connections(self, timeout: float = 5.0) -> int:
        """Close every open client connection, as a server restart or idle cut would."""
        done = threading.Event()
        closed: list[int] = []

        def close_all() -> None:
            sessions = list(self._controller.live)
            for smtp in sessions:
                if smtp.transport is not None:
                    smtp.transport.close()
            closed.append(len(sessions))
            done.set()

        self._controller.loop.call_soon_threadsafe(close_all)
        done.wait(timeout)
        return closed[0] if closed else 0

    def _count_session(self) -> None:
        with self._sessions_lock:
            self._sessions += 1


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, list[str]] = field(default_factory=dict)


Answer = tuple[int, dict[str, str], bytes | None]


@dataclass
class _Script:
    answers: deque[Answer]
    forever: bool


class _CountingServer(ThreadingHTTPServer):
    daemon_threads = True
    connections = 0

    def process_request(self, request, client_address) -> None:
        # Called once per accepted connection, on the serving thread.
        self.connections += 1
        super().process_request(request, client_address)


class LocalHttpServer:
    """A threaded HTTP server on its own thread: `start`/`stop` or a `with` block, the
    port it got (0 asks the system for a free one) and the TCP connections it accepted
    (how a test sees keep-alive)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], host: str = LOCALHOST, port: int = 0) -> None:
        self._server = _CountingServer((host, port), handler)
        self._thread: threading.Thread | None = None
        self.host = host

    @property
    def connections(self) -> int:
        return self._server.connections

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1]


class HttpSink(LocalHttpServer):
    """A real HTTP server on 127.0.0.1 that records requests and answers as told.

    `respond("/sms/", [503, 503])` answers the next two requests under /sms/ with
    503, then 200. `forever=True` repeats the last answer. An answer is a status,
    (status, headers) or (status, headers, body), e.g. (429, {"Retry-After": "7"}).
    """

    def __init__(self, host: str = LOCALHOST, port: int = 0, *, record: bool = True) -> None:
        self._requests = _Collector()
        self._scripts: dict[str, _Script] = {}
        self._scripts_lock = threading.Lock()
        self._record = record
        # Called with the path of each request before it is answered: a test's slow
        # provider (move a fake clock) or an outage that starts mid-send.
        self.before_answer: Callable[[str], None] | None = None
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                sink._requests.add(sink._describe(self, body) if sink._record else None)
                if sink.before_answer is not None:
                    sink.before_answer(self.path)
                status, headers, payload = sink._next_answer(self.path)
                if payload is None:
                    payload = b'{"ok": true}' if 200 <= status < 300 else b'{"error": "scripted"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_PUT = do_GET = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler, host, port)

    @property
    def address(self) -> str:
        """host:port, for Apprise templates such as f"json://{sink.address}/sms/{{phone}}"."""
        return f"{self.host}:{self.port}"

    @property
    def requests(self) -> list[ReceivedRequest]:
        return self._requests.snapshot()

    @property
    def count(self) -> int:
        return len(self._requests.snapshot())

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Block until `count` requests arrived; False on timeout."""
        return self._requests.wait_for(count, timeout)

    def respond(
        self,
        path_prefix: str,
        answers: list[int | tuple[int, dict[str, str]] | Answer],
        *,
        forever: bool = False,
    ) -> None:
        """Script the next answers for requests whose path starts with `path_prefix`."""
        queue: deque[Answer] = deque()
        for answer in answers:
            if isinstance(answer, int):
                queue.append((answer, {}, None))
            elif len(answer) == 2:
                queue.append((answer[0], answer[1], None))
            else:
                queue.append(answer)  # type: ignore[arg-type]
        with self._scripts_lock:
            self._scripts[path_prefix] = _Script(queue, forever)

    def _next_answer(self, path: str) -> Answer:
        with self._scripts_lock:
            for prefix in sorted(self._scripts, key=len, reverse=True):
                if not path.startswith(prefix):
                    continue
                script = self._scripts[prefix]
                if not script.answers:
                    break
                if script.forever and len(script.answers) == 1:
                    return script.answers[0]
                return script.answers.popleft()
        return 200, {}, None

    @staticmethod
    def _describe(handler: BaseHTTPRequestHandler, body: bytes) -> ReceivedRequest:
        content_type = handler.headers.get("Content-Type", "")
        parsed_json: Any = None
        form: dict[str, list[str]] = {}
        if "json" in content_type:
            try:
                parsed_json = json.loads(body or b"null")
            except ValueError:
                parsed_json = None
        elif "form" in content_type:
            form = parse_qs(body.decode("utf-8", "replace"))
        return ReceivedRequest(
            method=handler.command,
            path=handler.path,
            headers={k: v for k, v in handler.headers.items()},
            body=body,
            json=parsed_json,
            form=form,
        )


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """Run one sink as a process that counts what it receives."""
    parser = argparse.ArgumentParser(prog="python -m channels.sinks")
    parser.add_argument("kind", choices=("smtp", "http"))
    parser.add_argument("--host", default=LOCALHOST)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    if args.kind == "smtp":
        sink: Any = SmtpSink(args.host, parse=False)
        if args.port:
            sink._controller.port = args.port
    else:
        sink = HttpSink(args.host, args.port, record=False)
    sink.start()
    print(f"listening {args.kind} {args.host}:{sink.port}", flush=True)
    started = time.monotonic()
    while not stop.wait(3600):
        pass
    count = sink.count
    sink.stop()
    elapsed = time.monotonic() - started
    print(f"received {count} in {elapsed:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
