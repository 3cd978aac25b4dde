"""Property: whatever arrives, parse_event returns an Event or raises EventError
whose message starts with a field path or a general reason — never anything else."""

from __future__ import annotations

import copy
import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coupons.events import Event, EventError, parse_event

VALID = {
    "id": "evt-1",
    "type": "order.paid",
    "occurred_at": "2026-05-10T19:00:00+07:00",
    "data": {
        "order_id": "o-1",
        "stream_id": "live-1",
        "currency": "IDR",
        "customer": {
            "id": "c-1",
            "name": "Siti",
            "country": "ID",
            "locale": "id-ID",
            "timezone": "Asia/Jakarta",
            "email": "siti@example.com",
            "phone": "+6281234567890",
            "whatsapp": "+6281234567890",
            "line_id": "siti",
            "telegram_id": "siti_tg",
            "consent": ["whatsapp", "email"],
        },
        "items": [
            {"sku": "serum", "name": "Serum", "unit_price": "189000", "quantity": 1, "refill_sku": "serum-r"},
            {"sku": "soap", "name": "Soap", "unit_price": 25000, "quantity": 2},
        ],
    },
}

GENERAL_REASONS = ("an event must be a JSON object", "not valid JSON", "not valid UTF-8", "event is larger than")
FIELD_PATH = re.compile(r"^(?P<path>[A-Za-z_]+(?:\.[A-Za-z_]+|\[\d+\])*): \S")

FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", " ", "0", "-1", "1.5", "+6281234567890", "USD", "email", "ZZ", "2026-05-10T12:00:00Z",
                     "1e999", "NaN", "Infinity", "a@b", "x" * 200, "\u0000", "\ud800"]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=10), children, max_size=4),
    ),
    max_leaves=12,
)


def check_outcome(text: str) -> EventError | None:
    """parse_event's contract; returns the error (if any) for further checks."""
    try:
        result = parse_event(text)
    except EventError as exc:
        message = str(exc)
        assert message.startswith(GENERAL_REASONS) or FIELD_PATH.match(message), message
        return exc
    assert isinstance(result, Event)
    return None


def dumps(value: object) -> str:
    # ensure_ascii keeps lone surrogates encodable; allow_nan lets NaN/Infinity through as shops may send them
    return json.dumps(value)


def paths(value: object, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, prefix + (index,))
    return found


ALL_PATHS = paths(VALID)


def render(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else ("." if text else "") + part
    return text


@FUZZ
@given(json_values)
def test_any_json_value_gives_an_event_or_an_event_error(value):
    check_outcome(dumps(value))


@FUZZ
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_any_text_gives_an_event_or_an_event_error(text):
    check_outcome(text)


@FUZZ
@given(
    path=st.sampled_from(ALL_PATHS),
    action=st.sampled_from(["drop", "replace", "string"]),
    replacement=json_values,
    string=st.text(max_size=30),
)
def test_a_mutated_order_paid_is_accepted_or_rejected_at_the_mutated_field(path, action, replacement, string):
    # Given a valid order.paid with one thing changed
    event = copy.deepcopy(VALID)
    parent = event
    for part in path[:-1]:
        parent = parent[part]
    leaf = path[-1]
    if action == "drop":
        del parent[leaf]
    else:
        parent[leaf] = replacement if action == "replace" else string

    # When
    error = check_outcome(dumps(event))

    # Then a rejection names the changed field, something inside it, or what contains it
    if error is not None and path[0] != "type":
        named = FIELD_PATH.match(str(error))
        assert named, str(error)
        changed, reported = render(path), named["path"]
        assert reported.startswith(changed) or changed.startswith(reported), (changed, str(error))


def test_the_unmutated_event_is_valid():
    assert check_outcome(dumps(VALID)) is None


# Every character, surrogates and NUL included: what a JSON escape can smuggle in.
any_text = st.text(alphabet=st.characters(codec=None, categories=None), max_size=300)
edge_values = st.one_of(
    any_text,
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from(["9" * 5000, "0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00", "x" * 400]),
)


def _storable(value: object) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return "\x00" not in value
    if isinstance(value, dict):
        return all(_storable(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_storable(v) for v in value)
    if hasattr(value, "model_dump"):
        return _storable(value.model_dump())
    return True


@FUZZ
@given(path=st.sampled_from(ALL_PATHS), value=edge_values)
def test_an_accepted_event_holds_only_text_a_database_can_store(path, value):
    # Given a valid order.paid with one leaf replaced by an edge value (a huge integer as a bare literal)
    event = copy.deepcopy(VALID)
    parent = event
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = "__VALUE__"
    text = dumps(event).replace('"__VALUE__"', value if isinstance(value, str) and value.isdigit() else dumps(value))
    # When it is parsed
    error = check_outcome(text)
    # Then, if accepted, its stored text and every field are storable and its time is in range
    if error is None:
        parsed = parse_event(text)
        assert _storable(parsed.data) and parsed.text.encode("utf-8")
        assert 2000 <= parsed.occurred_at.year < 9000
