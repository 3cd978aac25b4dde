"""A real SMTP server on 127.0.0.1 (aiosmtpd) that records or counts what it receives,
with the options a test needs: AUTH, pipelining, slow or held RCPT answers."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from .common import LOCALHOST, Collector


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
        hold_after = self._sink.hold_after
        if hold_after is not None and self._sink.count >= hold_after:
            self._sink.rcpt_held = True
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
        if self._sink.data_held:
            # The message is in, its 250 not yet said: a client killed now never hears it
            # was accepted, and sends it again (the window SPEC rule 19 is about).
            self._sink.waiting_after_data += 1
            try:
                while self._sink.data_held:
                    await asyncio.sleep(0.01)
            finally:
                self._sink.waiting_after_data -= 1
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
        self._received = Collector()
        self.pipelining = pipelining  # advertise RFC 2920 PIPELINING, as most real relays do
        self._refusals: dict[str, tuple[int, str]] = {}
        self._refusing_everyone: tuple[int, str] | None = None
        self.rcpt_delay = 0.0  # seconds the server waits before answering RCPT
        self.waiting_in_rcpt = 0  # clients held in that wait right now (event-loop thread writes)
        self.peak_waiting_in_rcpt = 0  # the most clients ever held there at once
        # While True, no recipient is accepted at all (also those already waiting out
        # rcpt_delay): the server accepts nothing new until it is released.
        self.rcpt_held = False
        # Once this many messages were accepted, `rcpt_held` turns on by itself: a test
        # that must act mid-stream gets its moment from the server, not from a race.
        self.hold_after: int | None = None
        # Sessions whose recipient was accepted and whose DATA is not answered yet: a
        # message that may still be accepted. Empty + every new RCPT held = nothing new
        # can be accepted (crash tests wait for that before they kill a worker).
        self.past_rcpt: set[int] = set()
        # While True, a message is kept but its "250 accepted" is held back (a provider
        # slow to confirm); `waiting_after_data` counts the clients held there.
        self.data_held = False
        self.waiting_after_data = 0
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

    def release_recipients(self) -> None:
        """End `rcpt_held` and `hold_after`: every held and new recipient is answered again."""
        self.hold_after = None
        self.rcpt_held = False

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
