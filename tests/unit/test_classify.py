"""classify_apprise_log against log entries captured from real Apprise 2.3 sends.

Each case is what `Apprise.notify(..., log_level=DEBUG).logs()` produced for one
call, formatted "LEVEL - message" as channels.adapter joins them. Captured
against channels.sinks (HttpSink, SmtpSink), a closed port and a silent port.
"""

from __future__ import annotations

import re

import pytest

from channels.classify import SendResult, classify_apprise_log, from_smtp_code, read_by_classification

PAYLOAD = "DEBUG - JSON Payload: {'version': '1.0', 'title': 't', 'message': 'hi', 'attachments': [], 'type': 'info'}"


def entries(*lines: str) -> str:
    return "\n".join(
        ["DEBUG - Threaded notification mode", "INFO - Notifying 1 service(s)."] + list(lines)
    )


JSON_503 = entries(
    "DEBUG - JSON POST URL: http://127.0.0.1:42363/s503/+15551234567 (cert_verify=True)",
    PAYLOAD,
    "WARNING - Failed to send JSON POST notification: Servers are overloaded., error=503.",
    "DEBUG - Response Details:\r\nb'{\"error\": \"scripted\"}'",
    "DEBUG - JSON send() completed in 0.00s.",
)
JSON_400 = entries(
    "DEBUG - JSON POST URL: http://127.0.0.1:42363/s400/+15551234567 (cert_verify=True)",
    PAYLOAD,
    "WARNING - Failed to send JSON POST notification: Bad Request - Unsupported Parameters., error=400.",
    "DEBUG - Response Details:\r\nb'{\"error\": \"scripted\"}'",
    "DEBUG - JSON send() completed in 0.00s.",
)
JSON_429 = entries(
    "DEBUG - JSON POST URL: http://127.0.0.1:42363/s429/+15551234567 (cert_verify=True)",
    PAYLOAD,
    "WARNING - Failed to send JSON POST notification: error=429.",
    "DEBUG - Response Details:\r\nb'{\"error\": \"scripted\"}'",
    "DEBUG - JSON send() completed in 0.00s.",
)
JSON_429_BODY_HINT = entries(
    "WARNING - Failed to send JSON POST notification: error=429.",
    "DEBUG - Response Details:\r\nb'{\"error\": \"slow down\", \"retry_after\": 12}'",
)
JSON_REFUSED = entries(
    "DEBUG - JSON POST URL: http://127.0.0.1:49989/sms/x (cert_verify=True)",
    PAYLOAD,
    "WARNING - A Connection error occurred sending JSON notification to 127.0.0.1.",
    "DEBUG - Socket Exception: HTTPConnectionPool(host='127.0.0.1', port=49989): Max retries "
    "exceeded with url: /sms/x (Caused by NewConnectionError(\"HTTPConnection(host='127.0.0.1', "
    "port=49989): Failed to establish a new connection: [Errno 111] Connection refused\"))",
    "DEBUG - JSON send() completed in 0.00s.",
)
JSON_READ_TIMEOUT = entries(
    "DEBUG - JSON POST URL: http://127.0.0.1:60869/sms/x (cert_verify=True)",
    PAYLOAD,
    "WARNING - A Connection error occurred sending JSON notification to 127.0.0.1.",
    "DEBUG - Socket Exception: HTTPConnectionPool(host='127.0.0.1', port=60869): Read timed out. (read timeout=0.5)",
    "DEBUG - JSON send() completed in 0.50s.",
)
JSON_REFUSED_WARNING_ONLY = entries(  # the apprise logger above DEBUG
    "WARNING - A Connection error occurred sending JSON notification to 127.0.0.1.",
)
FORM_503 = entries(
    "DEBUG - Form POST URL: http://127.0.0.1:42363/s503/+15551234567 (cert_verify=True)",
    "DEBUG - Form Payload: {'version': '1.0', 'title': 't', 'message': 'hi', 'type': 'info'}",
    "WARNING - Failed to send Form POST notification: Servers are overloaded., error=503.",
    "DEBUG - Response Details:\r\nb'{\"error\": \"scripted\"}'",
    "DEBUG - Form send() completed in 0.00s.",
)
FORM_400 = entries(
    "WARNING - Failed to send Form POST notification: Bad Request - Unsupported Parameters., error=400.",
    "DEBUG - Response Details:\r\nb'{\"error\": \"scripted\"}'",
)
FORM_429 = entries("WARNING - Failed to send Form POST notification: error=429.")
FORM_READ_TIMEOUT = entries(
    "WARNING - A Connection error occurred sending Form notification to 127.0.0.1.",
    "DEBUG - Socket Exception: HTTPConnectionPool(host='127.0.0.1', port=60869): Read timed out. (read timeout=0.5)",
)
MAILTO_550 = entries(
    "DEBUG - Connecting to remote SMTP server...",
    "DEBUG - SMTP Host: 127.0.0.1",
    "DEBUG - Email From: shop@example.com",
    "DEBUG - Email To: bad@example.com",
    "DEBUG - Socket Exception: {'bad@example.com': (550, b'5.1.1 No such user')}",
    'WARNING - Sending email to "bad@example.com" failed.',
    "DEBUG - E-Mail send() completed in 0.02s.",
)
MAILTO_451 = entries(
    "DEBUG - Connecting to remote SMTP server...",
    "DEBUG - Email To: later@example.com",
    "DEBUG - Socket Exception: {'later@example.com': (451, b'4.3.0 try later')}",
    'WARNING - Sending email to "later@example.com" failed.',
)
MAILTO_PARTLY_REFUSED = entries(
    "WARNING - SMTP recipient bad@example.com was refused: 553 b'5.1.3 bad address'",
    'WARNING - Sending email to "bad@example.com" failed.',
)
MAILTO_NO_RECIPIENT = entries(
    "WARNING - There are no Email recipients to notify",
    "DEBUG - E-Mail send() completed in 0.00s.",
)
MAILTO_REFUSED = entries(
    "DEBUG - Connecting to remote SMTP server...",
    'WARNING - Connection error while submitting email to "127.0.0.1"',
    "DEBUG - Socket Exception: [Errno 111] Connection refused",
    "DEBUG - E-Mail send() completed in 0.02s.",
)
SMS_BAD_PHONE = entries(
    "WARNING - Dropped invalid phone # (12) specified.",
    "WARNING - There are no valid Twilio targets to notify.",
)
NOTHING_RECOGNISABLE = entries("WARNING - Notification service 'JSON' raised an exception.")


@pytest.mark.parametrize(
    ("plugin", "log_text", "transient", "reason", "retry_after"),
    [
        ("json", JSON_503, True, "http_503", None),
        ("json", JSON_400, False, "http_400", None),
        ("json", JSON_429, True, "http_429", None),
        ("json", JSON_429_BODY_HINT, True, "http_429", 12.0),
        ("json", JSON_REFUSED, True, "connection", None),
        ("json", JSON_READ_TIMEOUT, True, "timeout", None),
        ("json", JSON_REFUSED_WARNING_ONLY, True, "connection", None),
        ("form", FORM_503, True, "http_503", None),
        ("form", FORM_400, False, "http_400", None),
        ("form", FORM_429, True, "http_429", None),
        ("form", FORM_READ_TIMEOUT, True, "timeout", None),
        ("mailto", MAILTO_550, False, "invalid_address", None),
        ("mailto", MAILTO_451, True, "smtp_4xx", None),
        ("mailto", MAILTO_PARTLY_REFUSED, False, "invalid_address", None),
        ("mailto", MAILTO_NO_RECIPIENT, False, "invalid_address", None),
        ("mailto", MAILTO_REFUSED, True, "connection", None),
        ("twilio", SMS_BAD_PHONE, False, "invalid_address", None),
        ("any", NOTHING_RECOGNISABLE, True, "unknown", None),
        ("any", "", True, "unknown", None),
    ],
)
def test_failed_call_is_classified_from_its_log(
    plugin: str, log_text: str, transient: bool, reason: str, retry_after: float | None
) -> None:
    # Given the log of a failed Apprise call
    # When it is classified
    result = classify_apprise_log(False, log_text)
    # Then the reason and its retry class match what the provider meant
    assert (result.ok, result.transient, result.reason, result.retry_after) == (
        False,
        transient,
        reason,
        retry_after,
    )
    assert result.detail
    assert "\n" not in result.detail


def test_success_is_sent_whatever_the_log_says() -> None:
    # Given a successful call whose log mentions an error code in passing
    # When / Then it is simply sent
    assert classify_apprise_log(True, JSON_503) == SendResult(True, False, "sent", "")


def test_our_own_payload_never_steers_the_classification() -> None:
    # Given a failed call whose DEBUG payload line (our message text) looks like a 400
    log_text = entries(
        "DEBUG - JSON Payload: {'message': 'error=400. Connection refused timed out'}",
        "WARNING - Failed to send JSON POST notification: Servers are overloaded., error=503.",
    )
    # When it is classified
    result = classify_apprise_log(False, log_text)
    # Then only Apprise's own warning counts
    assert (result.transient, result.reason) == (True, "http_503")


def test_detail_is_the_warning_without_level_prefix() -> None:
    result = classify_apprise_log(False, JSON_503)
    assert result.detail == "Failed to send JSON POST notification: Servers are overloaded., error=503."


@pytest.mark.parametrize(
    ("code", "transient", "reason"),
    [
        (421, True, "smtp_4xx"),
        (451, True, "smtp_4xx"),
        (550, False, "invalid_address"),
        (553, False, "invalid_address"),
        (552, False, "smtp_5xx"),
        (554, False, "smtp_5xx"),
    ],
)
def test_smtp_reply_codes(code: int, transient: bool, reason: str) -> None:
    result = from_smtp_code(code, "x")
    assert (result.ok, result.transient, result.reason) == (False, transient, reason)


@pytest.mark.parametrize(
    ("status", "transient"),
    [(500, True), (502, True), (504, True), (408, True), (401, False), (403, False), (404, False), (422, False)],
)
def test_http_status_classes(status: int, transient: bool) -> None:
    result = classify_apprise_log(False, f"WARNING - Failed to send JSON POST notification: error={status}.")
    assert (result.transient, result.reason) == (transient, f"http_{status}")


CAPTURED_LOGS = [
    JSON_503, JSON_400, JSON_429, JSON_429_BODY_HINT, JSON_REFUSED, JSON_READ_TIMEOUT,
    JSON_REFUSED_WARNING_ONLY, FORM_503, FORM_400, FORM_429, FORM_READ_TIMEOUT, MAILTO_550,
    MAILTO_451, MAILTO_PARTLY_REFUSED, MAILTO_NO_RECIPIENT, MAILTO_REFUSED, SMS_BAD_PHONE,
    NOTHING_RECOGNISABLE,
    entries("DEBUG - Trigv asked to retry after 30 second(s).", "WARNING - Failed to send Trigv notification."),
    entries("DEBUG - JSON Payload: {'message': 'error=400. Connection refused timed out'}",
            "WARNING - Failed to send JSON POST notification: error=503."),
]


@pytest.mark.parametrize("log_text", CAPTURED_LOGS)
def test_entries_classification_does_not_read_can_be_left_out(log_text: str) -> None:
    # Given a captured call log, split into its entries ("LEVEL - message", some multi-line)
    records = re.split(r"\n(?=(?:TRACE|DEBUG|INFO|WARNING|ERROR|CRITICAL) - )", log_text)
    # When the entries read_by_classification rejects are left out, as the sender's capture does
    kept = [r for r in records if read_by_classification(*r.split(" - ", 1))]
    # Then the classification is the same, and the payload and timing lines are gone
    assert classify_apprise_log(False, "\n".join(kept)) == classify_apprise_log(False, log_text)
    assert not [r for r in kept if "Payload" in r or "completed in" in r]


@pytest.mark.parametrize(
    ("level", "message", "read"),
    [
        ("WARNING", "anything", True),
        ("ERROR", "", True),
        ("DEBUG", "Socket Exception: Read timed out", True),
        ("DEBUG", "Response Details:\r\nb'{}'", True),
        ("DEBUG", "Trigv asked to retry after 5 second(s).", True),
        ("DEBUG", "JSON POST URL: http://h/sms/+1555 (cert_verify=True)", False),
        ("INFO", "Sent JSON POST notification.", False),
        ("TRACE", "Deadline for 'JSON': none", False),
        ("DEBUG", "", True),  # blank: it would join the entry above it
        ("DEBUG", "two\nlines", True),
        ("Level 15", "custom level", True),
    ],
)
def test_what_classification_reads(level: str, message: str, read: bool) -> None:
    assert read_by_classification(level, message) is read
