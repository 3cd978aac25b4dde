"""Coupon codes: random, readable, redeemed case-insensitively.

15 symbols from a 31-letter alphabet (no 0 O 1 I L) carry 74 bits from
`secrets`, so codes cannot be guessed and never depend on customer data.
"""

from __future__ import annotations

import math
import secrets

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
GROUPS = 3
GROUP_SIZE = 5
CODE_BITS = GROUPS * GROUP_SIZE * math.log2(len(ALPHABET))
SYMBOLS = GROUPS * GROUP_SIZE
CODE_SPACE = len(ALPHABET) ** SYMBOLS
_DRAW_BITS = CODE_SPACE.bit_length()
_DRAW_BYTES = (_DRAW_BITS + 7) // 8


def new_code() -> str:
    return new_codes(1)[0]


def new_codes(count: int) -> list[str]:
    """`count` codes, each a uniform draw below 31**15 written in base 31.

    Each draw is what `secrets.randbelow` does -- a 75-bit number from the system's
    randomness, drawn again while it is not below 31**15 -- but the bytes for a
    whole batch come from one `secrets.token_bytes` call: a system call per code
    (15 with one `secrets.choice` per symbol) was most of the cost of a code, and a
    10,000-buyer stream plans 10,000 of them while its first messages go out."""
    codes: list[str] = []
    while len(codes) < count:
        wanted = count - len(codes)
        pool = secrets.token_bytes(_DRAW_BYTES * (wanted + wanted // 4 + 1))  # ~81% of draws are kept
        for start in range(0, len(pool), _DRAW_BYTES):
            number = int.from_bytes(pool[start:start + _DRAW_BYTES], "big") >> (8 * _DRAW_BYTES - _DRAW_BITS)
            if number < CODE_SPACE:
                codes.append(_written(number))
                if len(codes) == count:
                    break
    return codes


def _written(number: int) -> str:
    digits = []
    for _ in range(SYMBOLS):
        number, digit = divmod(number, len(ALPHABET))
        digits.append(ALPHABET[digit])
    symbols = "".join(digits)
    return "-".join(symbols[i : i + GROUP_SIZE] for i in range(0, len(symbols), GROUP_SIZE))


def _symbols(text: str) -> str:
    """What a code is made of, as a customer may type it: any case, with or without separators."""
    return "".join(ch for ch in text.upper() if ch not in " -_")


def normalize_code(text: str) -> str | None:
    """The stored form of a code as a customer may type it, or None if it cannot be one."""
    symbols = _symbols(text)
    if len(symbols) != GROUPS * GROUP_SIZE or any(ch not in ALPHABET for ch in symbols):
        return None
    return "-".join(symbols[i : i + GROUP_SIZE] for i in range(0, len(symbols), GROUP_SIZE))


def same_code(a: str, b: str) -> bool:
    """Whether two texts name one code, by the rule redemption reads them with (also for
    texts that cannot be a code, which then name the same unknown one)."""
    return _symbols(a) == _symbols(b)
