"""Email over one reused SMTP connection per batch.

Apprise opens a new connection (and a new TLS context) for every email: about
40 emails/s per process against a local server, where a reused connection does
about 600/s (DESIGN.md, "Known traps"). So for mailto:// and mailtos:// Encore
keeps Apprise's URL parsing (host, port, TLS mode, credentials, From) and does
the SMTP part itself with smtplib: connect once, send the whole batch, quit.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import smtplib
import ssl
from functools import lru_cache
import time
from dataclasses import dataclass
from datetime import datetime, UTC
from email.generator import BytesGenerator
from email.header import Header
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32
from email.utils import format_datetime, formataddr, make_msgid
from io import BytesIO
from typing import Any

from coupons.errors import ConfigError
from coupons.model import Message

from .classify import SENT, SendResult, from_smtp_code

# A connection idle longer than this is checked with NOOP before use: servers
# commonly cut idle sessions after 60-300 s, and a NOOP is cheaper than a lost
# MAIL FROM. Back-to-back sends in a batch never pay for it.
IDLE_CHECK_SECONDS = 30.0


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to submit mail; taken from Apprise's NotifyEmail."""

    host: str
    port: int
    secure_mode: str  # "insecure" | "starttls" | "ssl"
    user: str | None
    password: str | None
    from_name: str | None
    from_addr: str
    verify_certificate: bool = True
    timeout: float = 15.0

    @classmethod
    def from_apprise(cls, plugin: Any) -> SmtpSettings:
        """Read the settings Apprise parsed from a mailto(s):// URL."""
        name, addr = plugin.from_addr[0], plugin.from_addr[1]
        return cls(
            host=plugin.smtp_host,
            port=int(plugin.port),
            secure_mode=plugin.secure_mode,
            user=plugin.user or None,
            password=plugin.password or None,
            from_name=name or None,
            from_addr=addr,
            verify_certificate=bool(plugin.verify_certificate),
            timeout=float(plugin.socket_connect_timeout),
        )


def build_email(message: Message, settings: SmtpSettings, to_addr: str) -> bytes:
    """The email on the wire: multipart/alternative (text + html), UTF-8, CRLF.

    Written directly (`_write_email`): byte for byte what the compat32 MIME classes and
    BytesGenerator write with the standard library's utf-8 defaults (tested; Apprise switches
    the process to quoted-printable when its email plugin loads, the parts here stay
    base64), at a tenth of their cost — 0.33 ms per message
    went to 0.03 ms on the bench message, most of it header folding that an ASCII
    header shorter than a line does not need. (Before that, EmailMessage +
    set_content cost 1.0 ms.)
    """
    # The delivery's own Message-ID when the message carries one (SPEC rule 19: every
    # attempt of a delivery is the same email); else a fresh one. An explicit domain:
    # without one, make_msgid resolves the local FQDN each time.
    message_id = _given_message_id(message) or make_msgid(domain=settings.from_addr.rpartition("@")[2] or None)
    return _write_email(message, settings, to_addr, boundary=f"=_encore_{secrets.token_hex(12)}",
                        date=format_datetime(datetime.now(UTC)), message_id=message_id)


def delivery_message_id(delivery_id: int, code: str, domain: str) -> str:
    """The one Message-ID of a delivery's email, whichever attempt sends it (SPEC rule 19),
    so a copy resent after a crash is recognisably the message the mailbox already holds.
    Deterministic: the delivery id, a digest of its coupon code (so two installs, or a
    database started afresh, never reuse each other's ids; the code itself is not shown),
    and the From address's domain (RFC 5322 3.6.4: unique, at a domain the sender owns)."""
    digest = hashlib.sha256(f"{delivery_id}:{code}".encode()).hexdigest()[:16]
    return f"<encore.{delivery_id}.{digest}@{domain}>"


def _given_message_id(message: Message) -> str | None:
    for name, value in message.headers:
        if name.lower() == "message-id":
            return value
    return None


def _other_headers(message: Message) -> tuple[tuple[str, str], ...]:
    """The message's own headers but its Message-ID, which the writer places itself."""
    if not any(name.lower() == "message-id" for name, _ in message.headers):
        return message.headers
    return tuple((name, value) for name, value in message.headers if name.lower() != "message-id")


def build_email_with_generator(message: Message, settings: SmtpSettings, to_addr: str, *, boundary: str,
                               date: str, message_id: str) -> bytes:
    """The same email through the standard library's MIME classes: the reference that
    `_write_email` must equal, byte for byte."""
    text = MIMEText(message.text, "plain", "utf-8")
    if message.html:
        # Our own boundary: the generator would otherwise compile a regex per
        # message to prove a random one absent. Parts are base64 (utf-8 MIMEText),
        # which cannot contain "_", so this boundary cannot clash with them.
        email: MIMEBase = MIMEMultipart("alternative", boundary=boundary)
        email.attach(text)
        email.attach(MIMEText(message.html, "html", "utf-8"))
    else:
        email = text
    subject = message.subject or ""
    # A Header object keeps the standard library's folding of long encoded subjects;
    # typeshed types the item as str only.
    email["Subject"] = subject if subject.isascii() else Header(subject, "utf-8")  # type: ignore[assignment]
    email["From"] = formataddr((settings.from_name or "", settings.from_addr), charset="utf-8")
    email["To"] = to_addr
    email["Date"] = date
    email["Message-ID"] = message_id
    for name, value in _other_headers(message):  # List-Unsubscribe (RFC 8058) when ENCORE_PUBLIC_URL is set
        email[name] = value
    buffer = BytesIO()
    BytesGenerator(buffer, mangle_from_=False, policy=compat32).flatten(email, linesep="\r\n")
    return buffer.getvalue()


_MAX_LINE = 78  # compat32's max_line_length: where it folds headers
_TEXT_PART_HEADERS = 'MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\n'


def _header(name: str, value: str | Header) -> str:
    """One header line as compat32 folds it: unchanged when ASCII and short enough; a
    long ASCII value with no place to fold (no space, ";" or ",": a List-Unsubscribe
    URL) goes whole onto a continuation line. Only other values pay for email.header's
    folding, which was a sixth of a send's CPU when every List-Unsubscribe took it."""
    if isinstance(value, str) and value.isascii() and "\r" not in value and "\n" not in value:
        if len(name) + 2 + len(value) <= _MAX_LINE:
            return f"{name}: {value}\r\n"
        if value.isprintable() and not any(c in value for c in " ;,"):
            return f"{name}: \r\n {value}\r\n"
    encoded = (value if isinstance(value, Header) else Header(value, header_name=name)).encode(
        linesep="\r\n", maxlinelen=_MAX_LINE)
    return f"{name}: {encoded}\r\n"


def _text_part(text: str, subtype: str) -> str:
    body = base64.encodebytes(text.encode("utf-8")).decode("ascii").replace("\n", "\r\n")
    return f'Content-Type: text/{subtype}; charset="utf-8"\r\n{_TEXT_PART_HEADERS}{body}'


@lru_cache(maxsize=1024)
def _subject_line(subject: str) -> str:
    """The Subject line, RFC 2047-encoded when it is not ASCII. Cached: that encoding
    and folding (email.header) was a sixth of a send's CPU, and a stream's messages
    share a handful of subjects."""
    return _header("Subject", subject if subject.isascii() else Header(subject, "utf-8"))


@lru_cache(maxsize=64)
def _from_value(from_name: str, from_addr: str) -> str:
    return formataddr((from_name, from_addr), charset="utf-8")


def _write_email(message: Message, settings: SmtpSettings, to_addr: str, *, boundary: str, date: str,
                 message_id: str) -> bytes:
    headers = [
        ("From", _from_value(settings.from_name or "", settings.from_addr)),
        ("To", to_addr),
        ("Date", date),
        ("Message-ID", message_id),
        *_other_headers(message),  # List-Unsubscribe (RFC 8058) when ENCORE_PUBLIC_URL is set
    ]
    if any(not value.isascii() for _, value in headers):
        # A non-ASCII address (SMTPUTF8): leave it to the generator's own rules.
        return build_email_with_generator(message, settings, to_addr, boundary=boundary, date=date,
                                          message_id=message_id)
    head = _subject_line(message.subject or "") + "".join(_header(name, value) for name, value in headers)
    if not message.html:
        return (f'Content-Type: text/plain; charset="utf-8"\r\n{_TEXT_PART_HEADERS[:-2]}{head}\r\n'
                + base64.encodebytes(message.text.encode("utf-8")).decode("ascii").replace("\n", "\r\n")
                ).encode("ascii")
    top = _header("Content-Type", f'multipart/alternative; boundary="{boundary}"') + "MIME-Version: 1.0\r\n"
    return (f"{top}{head}\r\n--{boundary}\r\n{_text_part(message.text, 'plain')}\r\n--{boundary}\r\n"
            f"{_text_part(message.html, 'html')}\r\n--{boundary}--\r\n").encode("ascii")


class SmtpConnection:
    """One SMTP session, opened on first use and reused until close().

    Not thread-safe: one per batch, in the thread that sends it.
    """

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None
        self._last_used = 0.0
        self.connections_opened = 0

    def send(self, to_addr: str, message: Message) -> SendResult:
        """Send one message; map SMTP replies and socket errors to a SendResult."""
        email = build_email(message, self.settings, to_addr)
        reused = self._smtp is not None
        try:
            if reused and time.monotonic() - self._last_used > IDLE_CHECK_SECONDS:
                reused = self._still_open()
            if not reused:
                self._connect()
            try:
                self._submit(email, to_addr)
            except (smtplib.SMTPServerDisconnected, ConnectionError):
                if not reused:
                    raise
                # The server closed a session we had kept: reconnect once and resend.
                self._discard()
                self._connect()
                self._submit(email, to_addr)
        except _NoSmtpUtf8:
            return SendResult(False, False, "invalid_address", "server cannot take a non-ASCII address")
        except smtplib.SMTPRecipientsRefused as refused:
            code, text = next(iter(refused.recipients.values()))
            return from_smtp_code(code, f"recipient refused: {code} {_text(text)}")
        except smtplib.SMTPResponseException as reply:
            # Sender refused, DATA refused, authentication refused, ...
            if reply.smtp_code >= 400:
                return from_smtp_code(
                    reply.smtp_code,
                    f"{type(reply).__name__}: {reply.smtp_code} {_text(reply.smtp_error)}",
                )
            self._discard()
            return SendResult(False, True, "unknown", f"{type(reply).__name__}: {reply.smtp_code}")
        except ssl.SSLCertVerificationError as error:
            self._discard()
            return SendResult(False, False, "tls", f"certificate not accepted: {error.verify_message}")
        except smtplib.SMTPNotSupportedError as error:
            self._discard()
            return SendResult(False, False, "smtp_config", f"server does not support: {error}")
        except TimeoutError as error:
            self._discard()
            return SendResult(False, True, "timeout", f"SMTP timed out: {error}")
        except (OSError, smtplib.SMTPException) as error:
            self._discard()
            return SendResult(False, True, "connection", f"{type(error).__name__}: {error}")
        self._last_used = time.monotonic()
        return SENT

    def greet(self) -> str:
        """Open the session as a send does (TLS and AUTH as configured), say EHLO, and
        return the name the server gives; nothing is sent. Raises what opening raises."""
        self._connect()
        assert self._smtp is not None
        self._smtp.ehlo_or_helo_if_needed()
        reply = self._smtp.ehlo_resp or self._smtp.helo_resp or b""
        return _text(reply).partition(" ")[0] or "a server without a name"

    def close(self) -> None:
        """QUIT politely; a connection that is already gone is fine."""
        if self._smtp is None:
            return
        try:
            self._smtp.quit()
        except (OSError, smtplib.SMTPException):
            pass
        finally:
            self._discard()

    def _connect(self) -> None:
        s = self.settings
        context = _tls_context(s.verify_certificate) if s.secure_mode in ("ssl", "starttls") else None
        if s.secure_mode == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        try:
            if s.secure_mode == "starttls":
                smtp.starttls(context=context)
            if s.user and s.password:
                smtp.login(s.user, s.password)
        except BaseException:
            smtp.close()
            raise
        self._smtp = smtp
        self.connections_opened += 1

    def _submit(self, email: bytes, to_addr: str) -> None:
        assert self._smtp is not None
        options: tuple[str, ...] = ()
        if not (to_addr.isascii() and self.settings.from_addr.isascii()):
            # An internationalised mailbox needs the server's SMTPUTF8.
            self._smtp.ehlo_or_helo_if_needed()
            if not self._smtp.has_extn("smtputf8"):
                raise _NoSmtpUtf8
            options = ("SMTPUTF8",)
        self._smtp.ehlo_or_helo_if_needed()
        if self._smtp.has_extn("pipelining"):
            _send_pipelined(self._smtp, self.settings.from_addr, to_addr, email, options)
        else:
            self._smtp.sendmail(self.settings.from_addr, [to_addr], email, mail_options=options)

    def _still_open(self) -> bool:
        try:
            assert self._smtp is not None
            return self._smtp.noop()[0] == 250
        except (OSError, smtplib.SMTPException):
            self._discard()
            return False

    def _discard(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.close()
            except OSError:
                pass
        self._smtp = None


class _NoSmtpUtf8(Exception):
    pass


class SmtpCheckError(ConfigError):
    """`check_smtp` could not complete a session; the message says what failed and where."""


_MODE_NAMES = {"insecure": "plain", "starttls": "STARTTLS", "ssl": "SSL"}


def check_smtp(settings: SmtpSettings) -> str:
    """What `encore check` asks of an email channel: a session opened exactly as sending
    opens one (SSL or STARTTLS as the URL says, AUTH when it holds credentials), EHLO,
    QUIT. Sends nothing. Returns how the server answered; raises SmtpCheckError saying
    what failed: refused, timeout, TLS failed, auth failed, or the server's own reply."""
    where = f"{settings.host}:{settings.port} ({_MODE_NAMES.get(settings.secure_mode, settings.secure_mode)})"
    connection = SmtpConnection(settings)
    try:
        name = connection.greet()
    except Exception as error:  # noqa: BLE001 - every failure becomes the check's one line
        raise SmtpCheckError(f"{where}: {_why_not(error, settings)}") from None
    finally:
        connection.close()
    login = (f"login accepted for {settings.user}" if settings.user and settings.password
             else "no credentials in the URL, so no AUTH")
    return f"{where} answered as {name}; {login}; nothing sent"


def _why_not(error: Exception, settings: SmtpSettings) -> str:
    """A session that did not open, in the words an operator looks for."""
    if isinstance(error, ConnectionRefusedError):
        return "refused (nothing listens there)"
    # smtplib turns a read that timed out into SMTPServerDisconnected("... timed out").
    if isinstance(error, TimeoutError) or "timed out" in str(error):
        return f"timeout (no answer within {settings.timeout:g} s)"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS failed: certificate not accepted ({error.verify_message})"
    if isinstance(error, ssl.SSLError):
        hint = " (the port speaks plain SMTP: use STARTTLS, or the SSL port)" \
            if error.reason == "WRONG_VERSION_NUMBER" else ""
        return f"TLS failed: {error.reason or error}{hint}"
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return f"auth failed for {settings.user}: {error.smtp_code} {_text(error.smtp_error)}"
    if isinstance(error, smtplib.SMTPNotSupportedError):
        if "STARTTLS" in str(error).upper():
            return "TLS failed: the server does not offer STARTTLS"
        return "auth failed: the server offers no AUTH, and the URL holds credentials"
    if isinstance(error, smtplib.SMTPResponseException):
        return f"the server answered {error.smtp_code} {_text(error.smtp_error)}"
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return "the server closed the connection"
    if isinstance(error, OSError):
        return f"cannot connect: {error.strerror or error}"
    return f"{type(error).__name__}: {error}"


_LINE_START_DOT = re.compile(rb"(?m)^\.")


def _send_pipelined(smtp: smtplib.SMTP, from_addr: str, to_addr: str, email: bytes,
                    options: tuple[str, ...]) -> None:
    """RFC 2920: MAIL, RCPT and DATA in one write, then the message: two round trips
    per message instead of smtplib's four, where a far server advertises PIPELINING.
    Raises what smtplib.sendmail raises for the same replies, so callers map them once."""
    command_options = list(options)
    if smtp.has_extn("size"):
        command_options.append(f"SIZE={len(email)}")
    if "SMTPUTF8" in options:
        smtp.command_encoding = "utf-8"
    suffix = "".join(f" {option}" for option in command_options)
    commands = f"MAIL FROM:{smtplib.quoteaddr(from_addr)}{suffix}\r\nRCPT TO:{smtplib.quoteaddr(to_addr)}\r\nDATA\r\n"
    if commands.count("\n") != 3 or commands.count("\r") != 3:
        raise ValueError("an address holds a line break")  # as smtplib.putcmd refuses it
    smtp.send(commands)
    mail, rcpt, data = smtp.getreply(), smtp.getreply(), smtp.getreply()
    if data[0] == 354 and (mail[0] != 250 or rcpt[0] not in (250, 251)):
        # A server that took DATA after refusing the envelope: end that empty message.
        smtp.send(b".\r\n")
        data = smtp.getreply()
    if mail[0] != 250 or rcpt[0] not in (250, 251) or data[0] != 354:
        _abandon(smtp, mail[0] if mail[0] != 250 else rcpt[0] if rcpt[0] not in (250, 251) else data[0])
        if mail[0] != 250:
            raise smtplib.SMTPSenderRefused(mail[0], mail[1], from_addr)
        if rcpt[0] not in (250, 251):
            raise smtplib.SMTPRecipientsRefused({to_addr: rcpt})
        raise smtplib.SMTPDataError(*data)
    body = _LINE_START_DOT.sub(b"..", email)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    smtp.send(body + b".\r\n")
    code, text = smtp.getreply()
    if code != 250:
        _abandon(smtp, code)
        raise smtplib.SMTPDataError(code, text)


def _abandon(smtp: smtplib.SMTP, code: int) -> None:
    """After a refusal: 421 means the server is closing the session; otherwise RSET
    so the session is clean for the next message (what smtplib.sendmail does)."""
    if code == 421:
        smtp.close()
    else:
        try:
            smtp.rset()
        except smtplib.SMTPServerDisconnected:
            pass


def _text(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:200]


@lru_cache(maxsize=2)
def _tls_context(verify_certificate: bool) -> ssl.SSLContext:
    """One TLS context per process: loading the CA store costs ~20 ms, per batch that added up."""
    context = ssl.create_default_context()
    if not verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
