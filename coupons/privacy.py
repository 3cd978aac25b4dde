"""Customer data out of the text Encore stores and logs about a failure.

A relay's refusal quotes the recipient (`550 5.1.1 <jane.doe@example.com>: Recipient
address rejected`), an SMS gateway the number, a chat API the user id; that text ends
up in attempt rows, `encore dead-letters` and logs, which operators read and share.
`mask_personal_data` hides the mailbox and the number but keeps what an operator acts
on: the e-mail domain (which mailbox provider refuses), the country calling code (a
country a provider will not serve), and every status or error code (`550 5.1.1`,
`error=503`, `(#131047)`).

Pure text rules, no I/O:

- an e-mail address, also percent-encoded (`jane%40example.com`) → `***@example.com`;
- a number written with `+` (or `%2B`) and 7–15 digits, spaced or not (`+14155550100`,
  `+1 (415) 555-0100`) → `+1***`, its country calling code kept;
- a national number grouped as one (`(415) 555-0100`, `0812-3456-7890`,
  `020 7183 8750`: an area group, then groups of 3–5 digits, 9–13 digits in all) and any
  run of 9–15 digits standing alone (a WhatsApp id `6281234567890`, a Telegram chat id)
  → `<phone>`;
- each of `known` (the recipient as sent, such as a LINE user id) → `<recipient>`.

Left alone: runs of 8 digits or fewer (status and error codes, ports, years), digits
inside a word or a dotted group (`AS(201806281)` is masked but `a1b2c3`, `10.0.0.1`,
`2.19.0` are not), dates and times (`2026-03-10 12:00:00`: groups of 2 digits).
Over-masking an epoch timestamp or a 9-digit diagnostic id is accepted; missing a
number is not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

_EMAIL = re.compile(
    r"[\w.!#$%'*+^`{|}~-]+(?:@|%40)"  # the mailbox (no "=", "&", "/", "?": those are a URL's)
    r"(?P<domain>(?:[\w-]+\.)+[\w-]{2,}|\[[^\]\s]{1,64}\])",
    re.IGNORECASE,
)
# "+" (or "%2B" in a URL), then 7-15 digits: written without a break (the first choice, so
# that "+14155550100 550 5.1.1" keeps its status code), or in groups ("+1 (415) 555-0100").
_INTERNATIONAL = re.compile(
    r"(?<![\w+%])(?:\+|%2B)(?P<number>\d{7,15}(?!\d)|\d{1,4}(?:[ .()-]{1,2}\d{1,5}){1,5}(?!\w))",
    re.IGNORECASE,
)
_NATIONAL = re.compile(r"(?<![\w.+-])(?:\(\d{2,5}\)|\d{2,5})(?:[ .-]\d{3,5}){1,3}(?!\w|[.-]\d)")
_DIGIT_RUN = re.compile(r"(?<![\w.+])\d{9,15}(?!\w|\.\d)")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_PHONE_DIGITS = range(7, 16)
_NATIONAL_DIGITS = range(9, 14)


def mask_personal_data(text: str, known: Iterable[str] = ()) -> str:
    """`text` with e-mail addresses, phone numbers and the `known` values masked."""
    if not text:
        return text
    for value in sorted({v for v in known if v and len(v) >= 3}, key=len, reverse=True):
        if "@" in value or value.lstrip("+").isdigit():
            continue  # the patterns below mask these and keep their domain or country code
        for form in {value, quote(value, safe="")}:
            text = text.replace(form, "<recipient>")
    text = _EMAIL.sub(lambda m: f"***@{m.group('domain')}", text)
    text = _INTERNATIONAL.sub(_international, text)
    text = _NATIONAL.sub(_national, text)
    return _DIGIT_RUN.sub("<phone>", text)


def _international(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group("number"))
    if len(digits) not in _PHONE_DIGITS:
        return match.group(0)
    for length in (1, 2, 3):
        if int(digits[:length]) in COUNTRY_CODE_TO_REGION_CODE:
            return f"+{digits[:length]}***"
    return "+***"


def _national(match: re.Match[str]) -> str:
    text = match.group(0)
    if _IPV4.fullmatch(text) or sum(c.isdigit() for c in text) not in _NATIONAL_DIGITS:
        return text
    return "<phone>"
