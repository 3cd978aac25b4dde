"""Rule 5: coupon codes are random, readable, unique and redeemed case-insensitively."""

from __future__ import annotations

import re

import pytest

from coupons.codes import ALPHABET, CODE_BITS, new_code, new_codes, normalize_code

CODE_SHAPE = re.compile(r"^[A-Z2-9]{5}-[A-Z2-9]{5}-[A-Z2-9]{5}$")


def test_alphabet_has_no_confusable_symbols():
    for confusable in "0O1IL":
        assert confusable not in ALPHABET
    assert len(set(ALPHABET)) == len(ALPHABET)


def test_code_carries_at_least_60_bits():
    assert CODE_BITS >= 60


def test_new_codes_are_readable_and_unique():
    # When
    codes = [new_code() for _ in range(10_000)]

    # Then
    assert len(set(codes)) == len(codes)
    for code in codes:
        assert CODE_SHAPE.match(code), code
        assert not set(code.replace("-", "")) & set("0O1IL"), code


def test_new_codes_use_the_whole_alphabet():
    # A generator stuck on a few symbols would not have the claimed entropy.
    seen = set("".join(new_code() for _ in range(2_000)).replace("-", ""))
    assert seen == set(ALPHABET)


@pytest.mark.parametrize("draw", [lambda n: [new_code() for _ in range(n)], new_codes], ids=["one by one", "batch"])
def test_every_position_of_a_code_uses_the_whole_alphabet(draw):
    # A code drawn as one number and written in base 31 must not leave a position
    # stuck or narrowed (the leading symbol of a number drawn too small, say).
    symbols = ["".join(code.split("-")) for code in draw(2_000)]
    for position in range(len(symbols[0])):
        assert {code[position] for code in symbols} == set(ALPHABET), position


def test_a_batch_of_codes_is_as_many_distinct_readable_codes():
    codes = new_codes(10_000)
    assert len(codes) == len(set(codes)) == 10_000
    assert all(CODE_SHAPE.match(code) for code in codes)


def test_new_code_is_its_own_normal_form():
    code = new_code()
    assert normalize_code(code) == code


@pytest.mark.parametrize(
    "typed",
    [
        "abcde-fghjk-mnpqr",
        "ABCDEFGHJKMNPQR",
        "abcdefghjkmnpqr",
        "  abcde fghjk mnpqr ",
        "ABCDE-FGHJKMNPQR",
        "AbCdE_fGhJk_MnPqR",
    ],
)
def test_normalize_code_accepts_what_a_customer_may_type(typed):
    assert normalize_code(typed) == "ABCDE-FGHJK-MNPQR"


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "ABCDE-FGHJK-MNPQ",  # too short
        "ABCDE-FGHJK-MNPQRS",  # too long
        "ABCDE-FGHJK-MNPQ0",  # zero
        "ABCDE-FGHJK-MNPQO",  # letter O
        "ABCDE-FGHJK-MNPQ1",  # one
        "ABCDE-FGHJK-MNPQI",  # letter I
        "ABCDE-FGHJK-MNPQl",  # lower-case L
        "ABCDE-FGHJK-MNPQ!",
        "ABCDE/FGHJK/MNPQR",
    ],
)
def test_normalize_code_rejects_what_cannot_be_a_code(typed):
    assert normalize_code(typed) is None
