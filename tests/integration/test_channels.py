"""channels/ through real Apprise, real SMTP (SmtpSink) and real HTTP (HttpSink).

Nothing is mocked between the sender and the socket. Redis tests skip when no
Redis answers, unless ENCORE_REQUIRE_SERVICES=1 (CI), where they fail instead.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Iterator

import apprise
import pytest

from channels import (
    ChannelConfigError,
    ChannelSender,
    LocalRateLimiter,
    RateLimiter,
    SendResult,
    fill_template,
    open_sender,
    validate_channel_template,
)
from channels.sinks import HttpSink, SmtpSink
from coupons.model import Message

EMAIL = Message(
    text="Hola Ana, tu código es K7QX-M4TP. ¡Vence el 12/05!",
    subject="Tu cupón ✓ — 30 % en Tinta",
    html="<p>Hola <b>Ana</b>, tu código es <code>K7QX-M4TP</code>.</p>",
)
SMS = Message(text="Ana, your code K7QX-M4TP gives 30% off ink until 12 May.")
PHONE = "+15551234567"


@pytest.fixture(params=[False, True], ids=["plain-smtp", "pipelining-smtp"])
def smtp_sink(request: pytest.FixtureRequest) -> Iterator[SmtpSink]:
    """Every email test runs against a server without and with RFC 2920 PIPELINING:
    the sender talks to each differently (four round trips per message, or two)."""
    with SmtpSink(pipelining=request.param) as sink:
        yield sink


@pytest.fixture
def http_sink() -> Iterator[HttpSink]:
    with HttpSink() as sink:
        yield sink


def email_template(sink: SmtpSink) -> str:
    return f"mailto://127.0.0.1:{sink.port}?from=Encore%20Shop%20<shop@example.com>&to={{email}}"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- email


def test_email_arrives_with_subject_text_html_and_recipient(smtp_sink: SmtpSink) -> None:
    # Given an email sender for a mailto:// template
    with open_sender("email", email_template(smtp_sink)) as sender:
        # When one message is sent to an address that needs percent-encoding
        result = sender.send("ana+coupons@example.com", EMAIL)

    # Then it is sent, and the server got a multipart/alternative UTF-8 email
    assert result == SendResult(True, False, "sent", "")
    assert smtp_sink.wait_for(1, timeout=5)
    received = smtp_sink.received[0]
    assert received.rcpt_tos == ("ana+coupons@example.com",)
    assert received.mail_from == "shop@example.com"
    email = received.message
    assert email["To"] == "ana+coupons@example.com"
    assert email["From"] == "Encore Shop <shop@example.com>"
    assert email["Subject"] == EMAIL.subject
    assert email["Date"] and email["Message-ID"].endswith("@example.com>")
    assert email.get_content_type() == "multipart/alternative"
    assert email.get_body(("plain",)).get_content().strip() == EMAIL.text
    assert email.get_body(("html",)).get_content().strip() == EMAIL.html


def test_lines_starting_with_a_dot_arrive_intact(smtp_sink: SmtpSink) -> None:
    # Given a message whose text has lines that start with "." (SMTP's end marker)
    text = ".hidden\n..two\n.\nend"
    with open_sender("email", email_template(smtp_sink)) as sender:
        # When it is sent
        result = sender.send("dots@example.com", Message(text=text, subject="dots"))
    # Then the server got those lines as written (dot-stuffed on the wire)
    assert result.ok, result
    assert smtp_sink.wait_for(1, timeout=5)
    assert smtp_sink.received[0].message.get_body(("plain",)).get_content().strip() == text


def test_a_pipelining_server_gets_the_envelope_in_one_write() -> None:
    # Given a server that advertises PIPELINING and answers MAIL, RCPT and DATA only
    # once all three have arrived (a client that waits for each reply would stall)
    server = _ScriptedPipeliningServer().start()
    template = f"mailto://127.0.0.1:{server.port}?from=shop@example.com&to={{email}}"
    with open_sender("email", template, in_call_retries=0) as sender:
        # When two emails are sent over the session
        first = sender.send("a@example.com", EMAIL)
        second = sender.send("b@example.com", EMAIL)
    server.stop()
    # Then both went out, each as one envelope write followed by the message
    assert first.ok and second.ok, (first, second, server.error)
    assert server.envelopes == [
        ["MAIL FROM:<shop@example.com> SIZE=" + server.sizes[0], "RCPT TO:<a@example.com>", "DATA"],
        ["MAIL FROM:<shop@example.com> SIZE=" + server.sizes[1], "RCPT TO:<b@example.com>", "DATA"],
    ]


class _ScriptedPipeliningServer:
    """One SMTP session, scripted: it answers an envelope only when MAIL, RCPT and
    DATA have all been read, so only a pipelining client gets through."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(10)
        self.port = self._listener.getsockname()[1]
        self.envelopes: list[list[str]] = []
        self.sizes: list[str] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> _ScriptedPipeliningServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._thread.join(timeout=10)
        self._listener.close()

    def _serve(self) -> None:
        try:
            connection, _ = self._listener.accept()
            with connection, connection.makefile("rb") as lines:
                connection.settimeout(5)
                connection.sendall(b"220 scripted ESMTP\r\n")
                assert lines.readline().upper().startswith(b"EHLO")
                connection.sendall(b"250-scripted\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n")
                while (line := lines.readline().rstrip(b"\r\n")).upper() != b"QUIT":
                    # MAIL, then RCPT and DATA read before anything is answered
                    envelope = [line.decode(), lines.readline().rstrip(b"\r\n").decode(),
                                lines.readline().rstrip(b"\r\n").decode()]
                    self.envelopes.append(envelope)
                    self.sizes.append(envelope[0].rpartition("SIZE=")[2])
                    connection.sendall(b"250 sender ok\r\n250 recipient ok\r\n354 go ahead\r\n")
                    while lines.readline() != b".\r\n":
                        pass
                    connection.sendall(b"250 queued\r\n")
                connection.sendall(b"221 bye\r\n")
        except BaseException as error:  # noqa: BLE001 - the test reports it
            self.error = error


def test_a_batch_reuses_one_smtp_connection(smtp_sink: SmtpSink) -> None:
    # Given one sender for a batch
    with open_sender("email", email_template(smtp_sink)) as sender:
        # When 50 emails go through it
        results = [sender.send(f"buyer{i}@example.com", EMAIL) for i in range(50)]

    # Then all arrive over a single SMTP session
    assert {r.reason for r in results} == {"sent"}
    assert smtp_sink.wait_for(50, timeout=10)
    assert smtp_sink.sessions == 1
    assert sorted(r.rcpt_tos[0] for r in smtp_sink.received) == sorted(
        f"buyer{i}@example.com" for i in range(50)
    )


def test_a_dropped_connection_is_reopened_once(smtp_sink: SmtpSink) -> None:
    # Given a sender that already holds an open session
    with open_sender("email", email_template(smtp_sink), in_call_retries=0) as sender:
        assert sender.send("first@example.com", EMAIL).ok
        assert smtp_sink.wait_for(1, timeout=5)
        # When the server drops it (restart, idle cut) before the next message
        assert smtp_sink.drop_connections() == 1
        result = sender.send("second@example.com", EMAIL)

    # Then the sender reconnects and the message still arrives
    assert result.ok, result
    assert smtp_sink.wait_for(2, timeout=5)
    assert smtp_sink.sessions == 2


def test_an_idle_connection_is_checked_before_use(
    smtp_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a sender whose session counts as idle at once, and the server cut it
    import channels.smtp

    monkeypatch.setattr(channels.smtp, "IDLE_CHECK_SECONDS", -1.0)
    with open_sender("email", email_template(smtp_sink), in_call_retries=0) as sender:
        assert sender.send("first@example.com", EMAIL).ok
        assert smtp_sink.wait_for(1, timeout=5)
        assert smtp_sink.drop_connections() == 1
        # When the next message is sent
        result = sender.send("second@example.com", EMAIL)
    # Then NOOP found the session gone and a fresh one carried the message
    assert result.ok, result
    assert smtp_sink.wait_for(2, timeout=5)
    assert smtp_sink.sessions == 2


def test_refused_recipients_are_permanent_or_transient_by_code(smtp_sink: SmtpSink) -> None:
    # Given a server that refuses one mailbox for good and one for now
    smtp_sink.refuse("gone@example.com", 550, "5.1.1 No such user")
    smtp_sink.refuse("busy@example.com", 451, "4.3.0 Try again later")
    with open_sender("email", email_template(smtp_sink), in_call_retries=0) as sender:
        # When each is sent to, then a good address after them
        gone = sender.send("gone@example.com", EMAIL)
        busy = sender.send("busy@example.com", EMAIL)
        fine = sender.send("fine@example.com", EMAIL)

    # Then 550 is a permanent invalid address, 451 transient, and the session survives
    assert (gone.transient, gone.reason) == (False, "invalid_address")
    assert "550" in gone.detail
    assert (busy.transient, busy.reason) == (True, "smtp_4xx")
    assert fine.ok
    assert smtp_sink.wait_for(1, timeout=5)
    assert smtp_sink.sessions == 1


def test_a_refusal_quoting_the_recipient_comes_back_without_their_address(smtp_sink: SmtpSink) -> None:
    # Given a relay whose refusal quotes the mailbox, as Postfix does
    address = "jane.private.doe@example.com"
    smtp_sink.refuse(address, 550, f"5.1.1 <{address}>: Recipient address rejected")
    with open_sender("email", email_template(smtp_sink), in_call_retries=0) as sender:
        result = sender.send(address, EMAIL)
    # Then the answer keeps the codes and the domain, not the mailbox
    assert result.reason == "invalid_address"
    assert result.detail == "recipient refused: 550 5.1.1 <***@example.com>: Recipient address rejected"


class _QuotingSender(ChannelSender):
    """A provider whose answers quote the recipient, and which crashes for LINE ids."""

    def _send_once(self, address: str, message: Message) -> SendResult:
        if address.startswith("U"):
            raise RuntimeError(f"push to {address} failed")
        return SendResult(False, True, "unknown", f"number {address} (wa_id {address.lstrip('+')}) is throttled")


def test_whatever_a_provider_says_about_the_recipient_is_masked_before_it_is_stored_or_logged(caplog) -> None:
    # Given a provider that names the number in its answer
    result = _QuotingSender("sms", in_call_retries=0).send("+6281234567890", SMS)
    # Then the result holds no number, whichever way it was written
    assert result.detail == "number +62*** (wa_id <phone>) is throttled"
    # ...and an unexpected error naming a recipient is logged without it
    line_id = "U0123456789abcdef0123456789abcdef"
    with caplog.at_level(logging.INFO, logger="channels.adapter"):
        crashed = _QuotingSender("line", in_call_retries=0).send(line_id, SMS)
    assert crashed.reason == "unknown"
    assert "push to <recipient> failed" in caplog.text and line_id not in caplog.text


def test_an_address_apprise_cannot_parse_is_permanent(smtp_sink: SmtpSink) -> None:
    with open_sender("email", email_template(smtp_sink)) as sender:
        result = sender.send("not-an-email", EMAIL)
    assert (result.ok, result.transient, result.reason) == (False, False, "invalid_address")
    assert smtp_sink.sessions == 0


def test_smtp_server_down_is_transient_and_retried_briefly_in_call() -> None:
    # Given an email template pointing at a closed port, and a recorded sleep
    naps: list[float] = []
    template = f"mailto://127.0.0.1:{closed_port()}?from=shop@example.com&to={{email}}"
    with open_sender("email", template, in_call_retries=2, sleep=naps.append) as sender:
        # When a message is sent
        result = sender.send("ana@example.com", EMAIL)

    # Then it is a transient connection failure after two short in-call retries
    assert (result.ok, result.transient, result.reason) == (False, True, "connection")
    assert len(naps) == 2
    assert all(0 < nap <= 1.2 for nap in naps)


# --------------------------------------------------------------------------- json:// (SMS)


def test_sms_goes_to_the_recipient_path_with_the_text(http_sink: HttpSink) -> None:
    # Given an SMS sender on a json:// template (json:// drops query args: path it is)
    with open_sender("sms", f"json://{http_sink.address}/sms/{{phone}}") as sender:
        # When a message is sent
        result = sender.send(PHONE, SMS)

    # Then the endpoint got the recipient in the path and the text in the body
    assert result.ok
    assert http_sink.wait_for(1, timeout=5)
    request = http_sink.requests[0]
    assert (request.method, request.path) == ("POST", f"/sms/{PHONE}")
    assert request.json["message"] == SMS.text


def test_http_503_is_transient_then_the_next_send_succeeds(http_sink: HttpSink) -> None:
    # Given a provider that answers 503 once
    http_sink.respond("/sms/", [503])
    with open_sender("sms", f"json://{http_sink.address}/sms/{{phone}}") as sender:
        # When two messages are sent
        first = sender.send(PHONE, SMS)
        second = sender.send(PHONE, SMS)

    # Then the 503 is transient (and not retried in-call: that is the outer backoff's job)
    assert (first.ok, first.transient, first.reason) == (False, True, "http_503")
    assert second.ok
    assert http_sink.count == 2


def test_http_400_is_permanent(http_sink: HttpSink) -> None:
    http_sink.respond("/whatsapp/", [400], forever=True)
    with open_sender("whatsapp", f"json://{http_sink.address}/whatsapp/{{whatsapp}}") as sender:
        result = sender.send(PHONE, SMS)
    assert (result.ok, result.transient, result.reason) == (False, False, "http_400")


def test_http_429_retry_after_header_is_read(http_sink: HttpSink) -> None:
    # Given a provider that rate-limits with a Retry-After header
    http_sink.respond("/sms/", [(429, {"Retry-After": "7"})])
    with open_sender("sms", f"json://{http_sink.address}/sms/{{phone}}") as sender:
        # When a message is sent
        result = sender.send(PHONE, SMS)

    # Then it is transient and carries the provider's wait (Apprise hides headers;
    # channels.http_headers reads them from the response)
    assert (result.transient, result.reason) == (True, "http_429")
    assert result.retry_after == 7.0


def test_http_503_retry_after_as_an_http_date_is_read(http_sink: HttpSink) -> None:
    from email.utils import format_datetime
    from datetime import UTC, datetime, timedelta

    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    http_sink.respond("/sms/", [(503, {"Retry-After": when})])
    with open_sender("sms", f"json://{http_sink.address}/sms/{{phone}}") as sender:
        result = sender.send(PHONE, SMS)
    assert (result.transient, result.reason) == (True, "http_503")
    assert 100 < result.retry_after <= 120


def test_http_429_retry_after_in_the_response_body_is_read(http_sink: HttpSink) -> None:
    # Given a provider that says when to come back in its response body
    http_sink.respond("/sms/", [(429, {}, b'{"error": "slow down", "retry_after": 7}')])
    with open_sender("sms", f"json://{http_sink.address}/sms/{{phone}}") as sender:
        result = sender.send(PHONE, SMS)
    # Then the hint reaches the caller
    assert (result.transient, result.reason, result.retry_after) == (True, "http_429", 7.0)


def test_connection_refused_is_transient_connection() -> None:
    with open_sender("sms", f"json://127.0.0.1:{closed_port()}/sms/{{phone}}", in_call_retries=0) as sender:
        result = sender.send(PHONE, SMS)
    assert (result.ok, result.transient, result.reason) == (False, True, "connection")


def test_a_silent_provider_is_a_transient_timeout() -> None:
    # Given a provider that accepts the connection and never answers
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        template = f"json://127.0.0.1:{silent.getsockname()[1]}/sms/{{phone}}?rto=0.3"
        with open_sender("sms", template, in_call_retries=0) as sender:
            # When a message is sent
            result = sender.send(PHONE, SMS)
    # Then it times out, transiently
    assert (result.ok, result.transient, result.reason) == (False, True, "timeout")


def test_credentials_never_reach_the_detail() -> None:
    template = f"json://encoreuser:S3cretPassw0rd@127.0.0.1:{closed_port()}/sms/{{phone}}"
    with open_sender("sms", template, in_call_retries=0) as sender:
        result = sender.send(PHONE, SMS)
    assert result.reason == "connection"
    assert "S3cretPassw0rd" not in result.detail and "encoreuser" not in result.detail


def test_apprise_lines_with_recipient_and_text_stay_out_of_app_logs(
    http_sink: HttpSink, caplog: pytest.LogCaptureFixture
) -> None:
    # Given application logging at DEBUG
    caplog.set_level(logging.DEBUG)
    http_sink.respond("/sms/", [503])
    # When messages are sent, one of them failing
    with open_sender("sms", f"json://{http_sink.address}/sms/{{phone}}") as sender:
        sender.send(PHONE, SMS)
        sender.send(PHONE, SMS)
    # Then no Apprise record (which would carry the phone and the coupon code) got out
    assert not [r for r in caplog.records if r.name.startswith("apprise")]
    assert logging.getLogger("apprise").propagate is True


def test_concurrent_senders_each_read_only_their_own_log(http_sink: HttpSink) -> None:
    # Given one endpoint that always refuses and one that is always overloaded
    from concurrent.futures import ThreadPoolExecutor

    http_sink.respond("/bad/", [400], forever=True)
    http_sink.respond("/busy/", [503], forever=True)

    def batch(kind: str) -> set[str]:
        with open_sender("sms", f"json://{http_sink.address}/{kind}/{{phone}}", in_call_retries=0) as sender:
            return {sender.send(PHONE, SMS).reason for _ in range(10)}

    # When eight worker threads send at once, half to each
    with ThreadPoolExecutor(max_workers=8) as pool:
        kinds = ["bad", "busy"] * 4
        reasons = list(pool.map(batch, kinds))

    # Then no thread classified another thread's failure (Apprise's per-call logs
    # are isolated; a global LogCapture would mix them)
    assert reasons == [{"http_400"} if k == "bad" else {"http_503"} for k in kinds]


def test_a_plugin_with_a_throttle_never_sleeps_between_sends(
    http_sink: HttpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a plugin whose class throttles (ntfy: 5.5 s between sends of one object)
    # and a clock whose sleep is recorded
    naps: list[float] = []
    monkeypatch.setattr(apprise.url.time, "sleep", naps.append)
    with open_sender("telegram", f"ntfy://{http_sink.address}/{{telegram_id}}") as sender:
        # When three messages are sent
        results = [sender.send("123456789", SMS) for _ in range(3)]
    # Then all are sent and Apprise never slept
    assert {r.reason for r in results} == {"sent"}
    assert naps == []
    assert http_sink.wait_for(3, timeout=5)


def test_apprise_own_retry_is_forced_off(http_sink: HttpSink) -> None:
    # Given a template asking Apprise to retry 3 times itself
    http_sink.respond("/sms/", [503], forever=True)
    template = f"json://{http_sink.address}/sms/{{phone}}?retry=3"
    with open_sender("sms", template, in_call_retries=0) as sender:
        result = sender.send(PHONE, SMS)
    # Then exactly one request was made: retries are Encore's
    assert result.reason == "http_503"
    assert http_sink.count == 1


# --------------------------------------------------------------------------- templates


@pytest.mark.parametrize(
    ("channel", "template", "complaint"),
    [
        ("sms", "json://127.0.0.1:9100/sms/", "{phone}"),
        ("sms", "json://127.0.0.1:9100/sms/{email}", "{phone}"),
        ("sms", "json://127.0.0.1:9100/{phone}/{phone}", "exactly once"),
        ("whatsapp", "json://127.0.0.1:9100/wa/{whatsapp}/{line_id}", "{line_id}"),
        ("line", "nosuchscheme://host/{line_id}", "Apprise cannot use"),
        ("telegram", "tgram://not-a-token/{telegram_id}", "Apprise cannot use"),
        ("email", "127.0.0.1/{email}", "not an Apprise URL"),
        ("email", "mailto://127.0.0.1?from=shop@example.com&to={email},boss@example.com", "only recipient"),
        ("email", "mailto://127.0.0.1?from=shop@example.com&to={email}&bcc=spy@example.com", "only recipient"),
    ],
)
def test_a_broken_template_fails_at_start_naming_the_setting(
    channel: str, template: str, complaint: str
) -> None:
    # When a broken template is validated, or a sender opened on it
    for attempt in (validate_channel_template, open_sender):
        with pytest.raises(ChannelConfigError) as raised:
            attempt(channel, template)
        # Then the error names the variable and the problem
        message = str(raised.value)
        assert message.startswith(f"ENCORE_CHANNEL_{channel.upper()}: ")
        assert complaint in message


def test_config_errors_do_not_echo_secrets() -> None:
    with pytest.raises(ChannelConfigError) as raised:
        validate_channel_template(
            "telegram", "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/{telegram_id}/{phone}"
        )
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" not in str(raised.value)


@pytest.mark.parametrize(
    ("channel", "template"),
    [
        ("email", "mailtos://user:pass@smtp.example.com?from=shop@example.com&to={email}"),
        ("sms", "twilio://ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb@+15551234567/{phone}"),
        ("sms", "json://127.0.0.1:9100/sms/{phone}"),
        ("telegram", "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/{telegram_id}"),
        ("line", "line://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/{line_id}"),
    ],
)
def test_good_templates_pass(channel: str, template: str) -> None:
    validate_channel_template(channel, template)


def test_fill_template_percent_encodes_the_address() -> None:
    assert fill_template("json://h/sms/{phone}", "+1 555/12") == "json://h/sms/%2B1%20555%2F12"
    assert fill_template("mailto://h?to={email}", "a+b@x.com") == "mailto://h?to=a%2Bb%40x.com"


# --------------------------------------------------------------------------- sender contract


class _ExplodingSender(ChannelSender):
    def __init__(self, error: BaseException, **kwargs) -> None:
        super().__init__("sms", **kwargs)
        self.error = error
        self.calls = 0

    def _send_once(self, address: str, message: Message) -> SendResult:
        self.calls += 1
        raise self.error


def test_an_unexpected_error_becomes_a_transient_unknown() -> None:
    sender = _ExplodingSender(RuntimeError("boom"), sleep=lambda _: None)
    result = sender.send(PHONE, SMS)
    assert (result.ok, result.transient, result.reason) == (False, True, "unknown")
    assert sender.calls == 1  # "unknown" is the outer retry's business


def test_celery_control_flow_exceptions_pass_through_unretried() -> None:
    from billiard.exceptions import SoftTimeLimitExceeded
    from celery.exceptions import Retry

    for error in (SoftTimeLimitExceeded(), Retry("again")):
        sender = _ExplodingSender(error, sleep=lambda _: None)
        with pytest.raises(type(error)):
            sender.send(PHONE, SMS)
        assert sender.calls == 1


def test_an_empty_address_is_permanent() -> None:
    with open_sender("sms", "json://127.0.0.1:9/sms/{phone}") as sender:
        result = sender.send("  ", SMS)
    assert (result.transient, result.reason) == (False, "invalid_address")


# --------------------------------------------------------------------------- rate limits


@pytest.fixture
def redis_client(redis_url: str):
    """Real Redis via conftest's redis_url (skips, or fails under ENCORE_REQUIRE_SERVICES=1)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.mark.services
def test_redis_bucket_grants_the_burst_then_says_how_long_to_wait(redis_client) -> None:
    # Given a bucket of 5 refilling at 1/s, shared by two workers
    channel = f"test-{uuid.uuid4().hex}"
    worker_a = RateLimiter(redis_client, channel, rate_per_sec=1, burst=5)
    worker_b = RateLimiter(redis_client, channel, rate_per_sec=1, burst=5)
    try:
        # When the two take 5 tokens between them, then one more
        granted = [worker_a.acquire(), worker_b.acquire(), worker_a.acquire(), worker_b.acquire(), worker_a.acquire()]
        wait = worker_b.acquire()

        # Then the burst is granted and the sixth must wait about a second
        assert granted == [0.0] * 5
        assert 0.5 < wait <= 1.0
        # And a refused acquire takes nothing: asking again gives the same answer
        assert worker_a.acquire() <= wait
    finally:
        redis_client.delete(worker_a.key)


@pytest.mark.services
def test_redis_bucket_rejects_more_than_its_burst(redis_client) -> None:
    limiter = RateLimiter(redis_client, f"test-{uuid.uuid4().hex}", rate_per_sec=10, burst=3)
    with pytest.raises(ValueError):
        limiter.acquire(4)


def test_local_bucket_refills_with_its_clock() -> None:
    # Given an in-process bucket of 2 at 4/s on a hand-driven clock
    now = [100.0]
    limiter = LocalRateLimiter(rate_per_sec=4, burst=2, clock=lambda: now[0])
    # When the burst is spent
    assert [limiter.acquire(), limiter.acquire()] == [0.0, 0.0]
    # Then the next waits a quarter second, and is granted once that has passed
    assert limiter.acquire() == pytest.approx(0.25)
    now[0] += 0.25
    assert limiter.acquire() == 0.0
    now[0] += 10
    assert [limiter.acquire(2), limiter.acquire()] == [0.0, pytest.approx(0.25)]


def test_an_in_call_retry_asks_first_whether_it_may_still_go_out() -> None:
    # Given an email template pointing at a closed port, and a caller whose deadline
    # (or quiet hours, or lease) runs out during the first wait
    naps: list[float] = []
    asked: list[bool] = []
    template = f"mailto://127.0.0.1:{closed_port()}?from=shop@example.com&to={{email}}"
    with open_sender("email", template, in_call_retries=2, sleep=naps.append) as sender:
        # When a message is sent
        result = sender.send("ana@example.com", EMAIL, may_attempt=lambda: asked.append(False) or False)
    # Then the retry is not made: the first answer is returned after asking once
    assert (result.ok, result.transient, result.reason) == (False, True, "connection")
    assert (len(naps), len(asked)) == (1, 1)


# --------------------------------------------------------------------------- equal to plain Apprise


def plain_apprise_answer(template: str, address: str, message: Message) -> SendResult:
    """What a send classified as before the parse-once path and the log filter:
    instantiate() on the filled URL, a fresh Apprise(), and every DEBUG line."""
    from channels.classify import classify_apprise_log

    logger = logging.getLogger("apprise")
    saved = (logger.level, logger.propagate)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        plugin = apprise.Apprise.instantiate(fill_template(template, address))
        plugin.retry = 0
        notifier = apprise.Apprise()
        notifier.add(plugin)
        result = notifier.notify(body=message.text, title="", log_level=logging.DEBUG)
        log_text = "\n".join(f"{e.level} - {e.message}" for e in result.logs())
        return classify_apprise_log(bool(result), log_text)
    finally:
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


@pytest.mark.parametrize(
    "answer",
    [200, 503, 400, 404, 429, (429, {}, b'{"error": "slow down", "retry_after": 7}'), "closed", "silent"],
)
def test_a_send_is_classified_as_plain_apprise_classifies_it(http_sink: HttpSink, answer) -> None:
    # Given a provider answering one way, reached through a template Encore parses once
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        if answer == "closed":
            host = f"127.0.0.1:{closed_port()}"
        elif answer == "silent":
            host = f"127.0.0.1:{silent.getsockname()[1]}"
        else:
            host = http_sink.address
            http_sink.respond("/wa/", [answer], forever=True)
        template = f"json://{host}/wa/{{whatsapp}}?rto=0.3"
        # When the sender sends, and plain Apprise sends the same message
        with open_sender("whatsapp", template, in_call_retries=0) as sender:
            ours = sender.send(PHONE, SMS)
        plain = plain_apprise_answer(template, PHONE, SMS)
    # Then both read the provider's answer the same way
    assert ours == plain
