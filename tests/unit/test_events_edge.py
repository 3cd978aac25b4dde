"""Whatever the database would refuse later is rejected at the edge, by field: found
later, it would fail a whole batch in the driver, and one bad line would take good
ones down with it."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest

from coupons.events import EventError, parse_event

RECEIVED = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
ORDER = {
    "id": "evt-1",
    "type": "order.paid",
    "occurred_at": "2026-03-10T11:00:00Z",
    "data": {
        "order_id": "o-1",
        "currency": "USD",
        "customer": {"id": "c-1", "name": "Ann", "country": "US", "consent": ["email"], "email": "ann@example.com"},
        "items": [{"sku": "shampoo", "name": "Shampoo", "unit_price": "20.00", "quantity": 1}],
    },
}


def changed(path: str, value) -> str:
    event = copy.deepcopy(ORDER)
    *parents, leaf = path.split(".")
    target = event
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(leaf) if leaf.isdigit() else leaf] = value
    return json.dumps(event)  # ensure_ascii: "\ud800" and "\u0000" travel as JSON escapes, as shops send them


def rejection(text: str | bytes) -> str:
    with pytest.raises(EventError) as caught:
        parse_event(text, RECEIVED)
    return str(caught.value)


@pytest.mark.parametrize("path", ["data.customer.name", "data.customer.id", "data.order_id", "data.items.0.name",
                                  "data.items.0.sku", "data.customer.line_id", "id"])
def test_an_unpaired_surrogate_is_rejected_naming_the_field(path):
    assert rejection(changed(path, "Ann \ud800")).startswith(path.replace(".0.", "[0].") + ": must not contain "
                                                                                     "unpaired surrogates")


@pytest.mark.parametrize("path", ["data.customer.name", "data.items.0.name", "data.customer.telegram_id"])
def test_a_nul_character_is_rejected_naming_the_field(path):
    assert rejection(changed(path, "Ann\u0000")) == f"{path.replace('.0.', '[0].')}: must not contain NUL characters (\\u0000)"


@pytest.mark.parametrize("when, reason", [
    ("0001-01-01T00:00:00+01:00", "occurred_at: must not be before 2000-01-01"),
    ("1999-12-31T23:59:59Z", "occurred_at: must not be before 2000-01-01"),
    ("9999-12-31T23:00:00-05:00", "occurred_at: must be before 9000-01-01"),
    ("9999-12-31T23:59:59Z", "occurred_at: must be before 9000-01-01"),
    ("2026-03-11T12:00:01Z", "occurred_at: must not be more than 1 day after it was received (2026-03-10T12:00:00Z)"),
])
def test_an_occurred_at_outside_the_sane_window_is_rejected(when, reason):
    assert rejection(changed("occurred_at", when)) == reason


def test_an_occurred_at_inside_the_window_is_kept_and_read_as_utc():
    event = parse_event(changed("occurred_at", "2026-03-11T12:00:00+00:00"), RECEIVED)
    assert event.occurred_at == datetime(2026, 3, 11, 12, 0, tzinfo=UTC)
    assert event.occurred_at.utcoffset().total_seconds() == 0


@pytest.mark.parametrize("path, reason", [
    ("data.items.0.quantity", "data.items[0].quantity: must be at most 1,000,000,000"),
    ("data.items.0.unit_price", "data.items[0].unit_price: must be < 1,000,000,000,000,000"),
    ("data.customer.name", "data.customer.name: must be a string"),
])
def test_an_integer_thousands_of_digits_long_is_rejected_naming_the_field(path, reason):
    text = changed(path, "HUGE").replace('"HUGE"', "9" * 5000)
    assert rejection(text) == reason


def test_an_integer_thousands_of_digits_long_in_an_ignored_field_is_stored_as_received():
    event = copy.deepcopy(ORDER)
    text = json.dumps(event)[:-1] + ', "extra": ' + "7" * 5000 + "}"
    assert parse_event(text, RECEIVED).text == text


@pytest.mark.parametrize("path, limit", [("data.order_id", 256), ("data.customer.id", 256), ("id", 128),
                                         ("data.customer.locale", 64), ("data.customer.line_id", 256)])
def test_ids_longer_than_their_column_are_rejected(path, limit):
    assert rejection(changed(path, "a" * (limit + 1))) == f"{path}: must be at most {limit} characters"


def test_undecodable_bytes_are_a_line_level_reason():
    line = changed("data.customer.name", "Ann").encode().replace(b"Ann", b"A\xffn")
    assert rejection(line).startswith("not valid UTF-8 (byte 0xff at position")


def test_utf8_bytes_are_accepted_and_kept_as_text():
    line = json.dumps(ORDER, ensure_ascii=False).replace("Ann", "Siti Ñandú ไทย").encode()
    assert parse_event(line, RECEIVED).data.customer.name == "Siti Ñandú ไทย"


def test_a_text_holding_a_raw_surrogate_is_a_line_level_reason():
    text = json.dumps(ORDER).replace("Ann", "\ud800")  # the character itself, not its escape
    assert rejection(text).startswith("not valid UTF-8 text (unpaired surrogate")


def test_a_valid_surrogate_pair_is_one_character_and_accepted():
    event = parse_event(changed("data.customer.name", "Ann \U0001F600"), RECEIVED)
    assert event.data.customer.name == "Ann \U0001F600"


# --- a request's array, split into the bytes of its elements --------------------------------------

@pytest.mark.parametrize("body, elements", [
    (b"[]", []),
    (b" \r\n[ \t]\n", []),
    # commas and brackets inside strings, escaped quotes, nesting: one element each
    (b'[{"a": "x,]}\\"y", "b": [1, {"c": "]"}]}, 2 ,"s"]', [b'{"a": "x,]}\\"y", "b": [1, {"c": "]"}]}', b"2",
                                                          b'"s"']),
    # duplicate keys and spacing are kept as sent
    (b'[ {"id": "a", "id": "b"} ]', [b'{"id": "a", "id": "b"}']),
    # a broken element still ends at the comma outside its brackets; parsing it rejects it alone
    (b'[{"a": ]}, {"b": 1}}, 1 2, 3]', [b'{"a": ]}', b'{"b": 1}}', b"1 2", b"3"]),
    # bytes that are not UTF-8 stay inside their element
    (b'["\xff\xfe", {"a": "\xc3\xa9"}]', [b'"\xff\xfe"', b'{"a": "\xc3\xa9"}']),
])
def test_an_array_is_split_into_its_elements_as_sent(body, elements):
    from coupons.event_arrays import split_array

    assert split_array(body) == elements


def test_deep_nesting_costs_the_splitter_nothing():
    from coupons.event_arrays import split_array

    deep = b"[" * 200_000 + b"]" * 200_000
    assert split_array(b"[" + deep + b', {"ok": 1}]') == [deep, b'{"ok": 1}']


@pytest.mark.parametrize("body", [b'{"id": "e"}', b"42", b"", b"  ", b"\xef\xbb\xbf[1]"])
def test_a_body_that_is_not_an_array_is_not_split(body):
    from coupons.event_arrays import split_array

    assert split_array(body) is None


@pytest.mark.parametrize("body, reason", [
    (b"[1,,2]", "Expecting value"), (b"[1,]", "Expecting value"), (b"[", "Expecting value"),
    (b"[1", "Expecting ',' delimiter"), (b'["open', "Unterminated string"), (b"[1] 2", "Extra data"),
    (b'[{"a": [1}', "Expecting ',' delimiter"),
])
def test_an_array_whose_elements_cannot_be_told_apart_is_refused_in_the_decoders_words(body, reason):
    from coupons.event_arrays import split_array

    with pytest.raises(EventError, match=f"^not valid JSON \\({reason}"):
        split_array(body)
