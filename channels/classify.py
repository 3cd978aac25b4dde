"""Turn what a provider answered into Encore's small outcome vocabulary.

Apprise answers a send with success or failure only; the reason is in its log
lines. SPEC rule 12 needs transient (retry on the same channel) versus permanent
(move to the next channel), so this module reads those lines. What it cannot
recognise is transient: a retry costs little, while a wrong "permanent" skips a
channel that would have worked.

Retry-After: Apprise's generic HTTP plugins (json://, form://, xml://) log the
status code and (at DEBUG) the response body, never the response headers, and
do not expose the response. So a Retry-After *header* is invisible through
Apprise; `retry_after` is filled only when the provider puts a retry-after value
in its response body, or a plugin logs one itself (trigv: "asked to retry after
N second(s)"). Otherwise it stays None and Encore's own backoff applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class SendResult:
    """The outcome of one send.

    `reason` is a short word ("sent", "http_503", "invalid_address", ...);
    `detail` is a one-line human explanation that never holds the channel URL.
    `retry_after` is the provider's own hint in seconds, when it gave one.
    """

    ok: bool
    transient: bool
    reason: str
    detail: str
    retry_after: float | None = None

    @property
    def permanent(self) -> bool:
        return not self.ok and not self.transient


SENT = SendResult(ok=True, transient=False, reason="sent", detail="")

# Lines as Apprise 2.x writes them (plugins/custom_json.py, custom_form.py,
# email/base.py, email/smtp.py, and the common "Dropped invalid ..." wording).
_HTTP_STATUS = re.compile(r"\berror=(\d{3})\b")
_SMTP_CODE = re.compile(r"(?:was refused: |\()([245]\d\d)\b")
_RETRY_AFTER = re.compile(
    r"retry[- _]after\D{0,20}?(\d+(?:\.\d+)?)", re.IGNORECASE
)
_TIMEOUT = re.compile(
    r"timed out|timeout|TimeoutError|Read timed out", re.IGNORECASE
)
_CONNECTION = re.compile(
    r"Connection error|Connection refused|Failed to establish a new connection"
    r"|Max retries exceeded|NameResolutionError|Name or service not known"
    r"|Connection reset|Connection aborted|RemoteDisconnected"
    r"|SMTPServerDisconnected|Connection unexpectedly closed",
    re.IGNORECASE,
)
_INVALID_ADDRESS = re.compile(
    r"Dropped invalid|There are no (?:valid )?\S*(?: \S+)? ?"
    r"(?:targets|recipients|IDs|topics|channels|users)\b.*to notify",
    re.IGNORECASE,
)
_PROBLEM_LEVELS = ("WARNING", "ERROR", "CRITICAL")
_ALL_LEVELS = _PROBLEM_LEVELS + ("DEPRECATION WARNING", "INFO", "DEBUG", "TRACE")
# DEBUG lines worth reading: exception text (timeouts show only there) and the
# provider's response body (which may carry a retry-after value). Other DEBUG
# lines echo our own payload, whose text must never steer the classification.
_USEFUL_DEBUG = ("Socket Exception", "Notification Exception", "I/O Exception")
_RESPONSE_DEBUG = ("Response Details",)
_RETRY_HINT = re.compile(r"asked to retry after", re.IGNORECASE)


def classify_apprise_log(ok: bool, log_text: str) -> SendResult:
    """Classify one Apprise notify() call from its success flag and log text.

    `log_text` holds one entry per line, "LEVEL - message" as Apprise formats
    them; lines without a level prefix are all read. Precedence: HTTP status,
    SMTP reply code, invalid address, timeout, connection, then unknown.
    """
    if ok:
        return SENT

    lines, responses = _readable(log_text)
    retry_after = _retry_after(lines + responses)

    for line in lines:
        match = _HTTP_STATUS.search(line)
        if match:
            return _from_http_status(int(match.group(1)), line, retry_after)

    for line in lines:
        match = _SMTP_CODE.search(line)
        if match and ("refused" in line or "Socket Exception" in line):
            return from_smtp_code(int(match.group(1)), _one_line(line))

    for line in lines:
        if _INVALID_ADDRESS.search(line):
            return SendResult(False, False, "invalid_address", _one_line(line))

    for line in lines:
        if _TIMEOUT.search(line):
            return SendResult(False, True, "timeout", _one_line(line), retry_after)

    for line in lines:
        if _CONNECTION.search(line):
            return SendResult(False, True, "connection", _one_line(line), retry_after)

    detail = _one_line(lines[0]) if lines else "Apprise reported a failure without a reason"
    return SendResult(False, True, "unknown", detail, retry_after)


def read_by_classification(level: str, message: str) -> bool:
    """Whether one Apprise log entry can change `classify_apprise_log`'s answer.

    False only for a one-line entry below WARNING that `_readable` skips (most
    DEBUG and INFO lines: our payload, the URL, timings), so a sender can leave
    those out of its capture. Blank, multi-line or padded messages and unknown
    levels count as read: they are parsed together with their neighbours.
    """
    if level not in _ALL_LEVELS or level in _PROBLEM_LEVELS:
        return True
    if not message.isprintable() or not message or message != message.strip():
        return True
    return message.startswith(_USEFUL_DEBUG + _RESPONSE_DEBUG) or bool(_RETRY_HINT.search(message))


def _readable(log_text: str) -> tuple[list[str], list[str]]:
    """Split captured entries into problem lines and provider response lines."""
    lines: list[str] = []
    responses: list[str] = []
    # An entry may span lines ("Response Details:\r\nb'...'"): continuation
    # lines belong to the entry above them.
    entries: list[str] = []
    for raw in log_text.splitlines():
        if not raw.strip():
            continue
        if entries and not _has_level(raw) and _has_level(entries[-1]):
            entries[-1] += " " + raw.strip()
        else:
            entries.append(raw.strip())
    for entry in entries:
        level, sep, rest = entry.partition(" - ")
        if not (sep and level in _ALL_LEVELS):
            lines.append(entry)
        elif level in _PROBLEM_LEVELS:
            lines.append(rest)
        elif rest.startswith(_USEFUL_DEBUG):
            lines.append(rest)
        elif rest.startswith(_RESPONSE_DEBUG) or _RETRY_HINT.search(rest):
            responses.append(rest)
    return lines, responses


def _has_level(line: str) -> bool:
    level, sep, _ = line.partition(" - ")
    return bool(sep) and level in _ALL_LEVELS


def _from_http_status(status: int, line: str, retry_after: float | None) -> SendResult:
    # 408 (request timeout) and 429 (too many requests) are the 4xx worth retrying.
    transient = status >= 500 or status in (408, 429) or status < 400
    return SendResult(
        ok=False,
        transient=transient,
        reason=f"http_{status}",
        detail=_one_line(line),
        retry_after=retry_after if transient else None,
    )


def from_smtp_code(code: int, detail: str) -> SendResult:
    """Classify an SMTP reply code: 4xx transient, 5xx permanent.

    550/551/553 name a mailbox that does not exist or is not allowed, which is a
    fact about the address rather than about the server.
    """
    if 400 <= code < 500:
        return SendResult(False, True, "smtp_4xx", detail)
    if code in (550, 551, 553):
        return SendResult(False, False, "invalid_address", detail)
    if 500 <= code < 600:
        return SendResult(False, False, "smtp_5xx", detail)
    return SendResult(False, True, "unknown", detail)


def _retry_after(lines: list[str]) -> float | None:
    for line in lines:
        match = _RETRY_AFTER.search(line)
        if match:
            return float(match.group(1))
    return None


def _one_line(line: str, limit: int = 300) -> str:
    line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
