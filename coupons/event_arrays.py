"""SPEC section 6: a `POST /events` body holding an array, cut into the bytes of its
elements without decoding it, so that each element is validated, stored and
dead-lettered alone and exactly as received (SPEC rule 14)."""

from __future__ import annotations

import re

from .errors import EventError
from .events import decode_line, load_json

_ARRAY_TOKENS = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"|["\[\]{},]', re.DOTALL)
"""A whole JSON string (escapes included), or one structural byte. A `"` alone is a
string that never ends."""
_JSON_WHITESPACE = b" \t\n\r"


def split_array(body: bytes) -> list[bytes] | None:
    """The bytes of each element of the JSON array `body`, exactly as sent (whitespace
    around them removed); None when `body` is not an array.

    Each element then goes through `parse_event` like one line of JSON Lines, so it is
    validated, stored and dead-lettered alone and as received. Decoding the whole array
    first would not allow that: one element nested too deeply fails the whole body, and
    an element encoded again from its decoded value is not what was sent (the first of
    two equal keys disappears). So the boundaries are found on the bytes: strings are
    skipped whole, brackets only counted (depth costs nothing), elements end at a comma
    or the closing `]` outside any bracket. JSON's structural characters are ASCII and
    never occur inside a UTF-8 sequence, so a bad byte stays inside its element too.

    Raises EventError when the elements cannot be told apart (a string that never
    ends, no closing `]`, an empty element as in `[1,,2]`, text after the array)."""
    start = len(body) - len(body.lstrip(_JSON_WHITESPACE))
    if body[start:start + 1] != b"[":
        return None
    elements: list[bytes] = []
    depth = 0
    element_start = start + 1
    for token in _ARRAY_TOKENS.finditer(body, start + 1):
        char = body[token.start()]
        if char == ord('"'):
            if token.end() - token.start() == 1:
                break  # a string that never ends
            continue
        if char in b"[{":
            depth += 1
        elif depth and char in b"]}":
            depth -= 1
        elif char in b",]" and not depth:  # outside any bracket: the element ends here
            element = body[element_start:token.start()].strip(_JSON_WHITESPACE)
            if char == ord("]") and not element and not elements:
                element_start = token.end()  # `[]`
            elif not element:
                break
            else:
                elements.append(element)
                element_start = token.end()
            if char == ord("]"):
                if body[token.end():].strip(_JSON_WHITESPACE):
                    break  # text after the array
                return elements
        # A `}` outside any bracket belongs to a broken element: rejected when it is parsed.
    raise _unsplittable(body)


def _unsplittable(body: bytes) -> EventError:
    """Why an array's elements cannot be told apart, in the words of the JSON decoder."""
    try:
        load_json(decode_line(body))
    except EventError as exc:
        return exc
    return EventError("", "not valid JSON (the array's elements cannot be told apart)")
