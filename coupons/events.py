"""SPEC section 1: parse and validate incoming events.

`parse_event` turns one raw JSON text into a validated `Event` or raises
`EventError` whose message names the offending field the way an integrator
reads it: `data.items[0].unit_price: must be > 0`.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from .errors import EventError
from .markets import country_zones
from .model import CHANNELS
from .money import known_currencies
from .shops import DEFAULT_SHOP, SHOP_NAME, Shops, UnknownShopError
from .sms_hours import SUBDIVISION_CODE

MAX_EVENT_BYTES = 256 * 1024
MAX_QUANTITY = 10**9
"""Far above any real order line; keeps quantities plain numbers everywhere they are stored."""
MAX_PRICE = Decimal(10) ** 15
"""Above any real unit price in any currency (VND prices reach 1e9); keeps offer
arithmetic inside Decimal's 28 digits."""
EVENT_TYPES = ("order.paid", "stream.ended", "order.refunded", "customer.opted_out", "coupon.redeemed")
EARLIEST_OCCURRED_AT = datetime(2000, 1, 1, tzinfo=UTC)
"""No shop event is older; anything earlier is a broken clock or a placeholder date."""
MAX_CLOCK_SKEW = timedelta(days=1)
"""How far `occurred_at` may lie after the moment the event was received (shop clocks drift)."""
LATEST_OCCURRED_AT = datetime(9000, 1, 1, tzinfo=UTC)
"""The ceiling when no receive time is known: far enough from datetime's year 9999 that
trigger + 6 h, deadline + 24 h and expiry + valid days cannot overflow."""
ID_MAX = 256
"""Ids other than the event id are stored in String(256) columns (store/models.py)."""
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_BCP47 = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


@lru_cache(maxsize=1)
def _countries() -> frozenset[str]:
    """ISO 3166-1 alpha-2 codes: the countries whose main time zone Encore knows."""
    return frozenset(country_zones())


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def _strict_str(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    _storable(value)
    return value


def _storable(value: str) -> None:
    """Refuse text the database driver cannot store: NUL (PostgreSQL) and unpaired
    surrogates (not encodable as UTF-8), both reachable through JSON escapes."""
    if value.isascii():
        if "\x00" in value:
            raise ValueError("must not contain NUL characters (\\u0000)")
        return
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (\\u0000)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"must not contain unpaired surrogates ({value[exc.start]!a} at position {exc.start})") from None


def _at_most(limit: int):
    def check(value: Any) -> Any:
        if isinstance(value, str) and len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")
        return value
    return check


def _non_empty_str(value: Any) -> str:
    _strict_str(value)
    if not value.strip():
        raise ValueError("must not be empty")
    return value


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(value: Any) -> Any:
    """No control character (`coupons.shops.shop_key`'s separator): no id spells another shop's key."""
    if isinstance(value, str) and _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


Text = Annotated[str, BeforeValidator(_non_empty_str)]
Id = Annotated[str, BeforeValidator(_no_control), BeforeValidator(_at_most(ID_MAX)), BeforeValidator(_non_empty_str)]
"""A required id that fits its String(256) column (validators run last-listed first)."""


def _shop_name(value: Any) -> str:
    if not isinstance(value, str) or not SHOP_NAME.fullmatch(value):
        raise ValueError("must be the name of a shop of the shops file (lowercase letters, digits, '-' and '_')")
    return value


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 timestamp with Z or an offset")
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
    except ValueError:
        raise ValueError("must be an RFC 3339 timestamp with Z or an offset") from None
    # Check the year before converting: 0001-01-01T00:00+01:00 has no UTC equivalent.
    if parsed.year >= LATEST_OCCURRED_AT.year:
        raise ValueError(f"must be before {LATEST_OCCURRED_AT:%Y-%m-%d}")
    if parsed.year < 1000 or parsed.astimezone(UTC) < EARLIEST_OCCURRED_AT:
        raise ValueError(f"must not be before {EARLIEST_OCCURRED_AT:%Y-%m-%d}")
    return parsed.astimezone(UTC)


def _e164(value: Any) -> str:
    _strict_str(value)
    if not re.fullmatch(r"\+[1-9]\d{6,14}", value):
        raise ValueError("must be an E.164 number like +6281234567890")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError("must be an E.164 number like +6281234567890") from None
    if not phonenumbers.is_possible_number(number):
        raise ValueError("is not a possible phone number")
    return value


def _email(value: Any) -> str:
    _strict_str(value)
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"must be a valid email address ({exc})") from None


def _price(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise ValueError("must be a decimal string or number")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("must be a decimal string or number") from None
    if not amount.is_finite():
        raise ValueError("must be a finite number")
    if amount <= 0:
        raise ValueError("must be > 0")
    if amount >= MAX_PRICE:
        raise ValueError(f"must be < {MAX_PRICE:,}")
    return amount


def _total(value: Any) -> Decimal:
    """An order's total as the shop reported it: like a price, but a fully discounted order's is 0."""
    try:
        if not isinstance(value, bool) and Decimal(str(value).strip()) == 0:
            return Decimal(0)
    except InvalidOperation:
        pass  # _price names what is wrong
    return _price(value)


def _quantity(value: Any) -> int:
    if isinstance(value, _HugeInteger):
        raise ValueError(f"must be at most {MAX_QUANTITY:,}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    if value < 1:
        raise ValueError("must be >= 1")
    if value > MAX_QUANTITY:
        raise ValueError(f"must be at most {MAX_QUANTITY:,}")
    return value


def _channels(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ValueError("must be a list of channels")
    for channel in value:
        if channel not in CHANNELS:
            raise ValueError(f"unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}")
    return list(dict.fromkeys(value))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CustomerData(_Strict):
    id: Id
    name: Annotated[str, BeforeValidator(_strict_str)] | None = None
    country: Annotated[str, BeforeValidator(_strict_str)]
    locale: Annotated[str, BeforeValidator(_at_most(64)), BeforeValidator(_strict_str)] | None = None
    timezone: Annotated[str, BeforeValidator(_at_most(64)), BeforeValidator(_strict_str)] | None = None
    email: Annotated[str, BeforeValidator(_at_most(320)), BeforeValidator(_email)] | None = None
    phone: Annotated[str, BeforeValidator(_e164)] | None = None
    whatsapp: Annotated[str, BeforeValidator(_e164)] | None = None
    line_id: Id | None = None
    telegram_id: Id | None = None
    region: Annotated[str, BeforeValidator(_strict_str)] | None = None  # ISO 3166-2, for US SMS hours (rule 17)
    consent: Annotated[list[str], BeforeValidator(_channels)]

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        if value.upper() not in _countries() or len(value) != 2:
            raise ValueError("must be an ISO 3166-1 alpha-2 country code")
        return value.upper()

    @field_validator("locale")
    @classmethod
    def _bcp47(cls, value: str | None) -> str | None:
        if value is not None and not _BCP47.fullmatch(value):
            raise ValueError("must be a BCP 47 language tag like pt-BR")
        return value

    @field_validator("timezone")
    @classmethod
    def _iana(cls, value: str | None) -> str | None:
        if value is not None and value not in _timezones():
            raise ValueError("must be an IANA time zone like Asia/Jakarta")
        return value

    @field_validator("region")
    @classmethod
    def _subdivision(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        code = value.strip().upper()
        if not SUBDIVISION_CODE.fullmatch(code):
            raise ValueError("must be an ISO 3166-2 subdivision code like US-FL")
        country = info.data.get("country")
        if country is not None and not code.startswith(country + "-"):
            raise ValueError(f"must be a subdivision of the customer's country {country} (starting {country}-)")
        return code


class ItemData(_Strict):
    sku: Text
    name: Text
    unit_price: Annotated[Decimal, BeforeValidator(_price)]
    quantity: Annotated[int, BeforeValidator(_quantity)]
    refill_sku: Text | None = None


class OrderPaid(_Strict):
    order_id: Id
    stream_id: Id | None = None
    currency: Annotated[str, BeforeValidator(_strict_str)]
    customer: CustomerData
    items: list[ItemData] = Field(min_length=1)
    discount_codes: list[Text] | None = None  # an Encore code among them redeems its coupon (rule 13)
    # What the customer paid, as the shop reported it (Shopify's total_price): the revenue of
    # a redeeming order in `encore review`; without it, the items' unit_price x quantity.
    total_price: Annotated[Decimal, BeforeValidator(_total)] | None = None

    @field_validator("currency")
    @classmethod
    def _iso4217(cls, value: str) -> str:
        if value not in known_currencies():
            raise ValueError("must be an ISO 4217 currency code like USD")
        return value


class StreamEnded(_Strict):
    stream_id: Id


class OrderRefunded(_Strict):
    order_id: Id


class CustomerOptedOut(_Strict):
    customer_id: Id
    channels: Annotated[list[str], BeforeValidator(_channels)] | None = None


class CouponRedeemed(_Strict):
    code: Id
    order_id: Id
    customer_id: Id | None = None


DATA_MODELS: dict[str, type[OrderPaid | StreamEnded | OrderRefunded | CustomerOptedOut | CouponRedeemed]] = {
    "order.paid": OrderPaid,
    "stream.ended": StreamEnded,
    "order.refunded": OrderRefunded,
    "customer.opted_out": CustomerOptedOut,
    "coupon.redeemed": CouponRedeemed,
}


class Envelope(_Strict):
    id: Annotated[str, BeforeValidator(_no_control), BeforeValidator(_strict_str), Field(min_length=1, max_length=128)]
    shop: Annotated[str, BeforeValidator(_shop_name)] = DEFAULT_SHOP
    type: Literal["order.paid", "stream.ended", "order.refunded", "customer.opted_out", "coupon.redeemed"]
    occurred_at: Annotated[datetime, BeforeValidator(_timestamp)]
    data: dict[str, Any]


class Event(_Strict):
    """A validated event: the envelope plus its typed `data`."""

    id: str
    type: str
    occurred_at: datetime
    shop: str = DEFAULT_SHOP
    """The shop it came from (SPEC section 7): its ids are scoped to it (`coupons.shop_scope`)."""
    data: OrderPaid | StreamEnded | OrderRefunded | CustomerOptedOut | CouponRedeemed
    raw: dict[str, Any]
    text: str | None = None
    """The JSON text as received (UTF-8-encodable, checked), stored as the inbox payload."""


_PYDANTIC_REASONS = {
    "missing": "required",
    "string_too_short": "must not be empty",
    "string_too_long": "is too long",
    "too_long": "is too long",
    "too_short": "must not be empty",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "literal_error": "must be one of " + ", ".join(EVENT_TYPES),
}


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path


def _first_error(exc: ValidationError, prefix: tuple[Any, ...] = ()) -> EventError:
    error = exc.errors(include_url=False)[0]
    reason = _PYDANTIC_REASONS.get(error["type"])
    if reason is None:
        reason = str(error["msg"]).removeprefix("Value error, ")
        reason = reason[0].lower() + reason[1:] if reason else "is invalid"
    if error["type"] in ("string_too_long", "too_long") and error.get("ctx"):
        reason = f"must be at most {error['ctx']['max_length']} characters"
    return EventError(_field_path(prefix + tuple(error["loc"])), reason)


def validate_event(obj: Any, received_at: datetime | None = None, text: str | None = None, *,
                   shops: Shops | None = None) -> Event:
    """Validate one decoded JSON value as an event. With `received_at`, `occurred_at`
    may lie at most `MAX_CLOCK_SKEW` after it (see README, rules where the spec is silent).
    With `shops` (the install's shops file; every service passes it), an unknown `shop` is rejected."""
    if not isinstance(obj, dict):
        raise EventError("", "an event must be a JSON object")
    try:
        envelope = Envelope.model_validate(obj)
    except ValidationError as exc:
        raise _first_error(exc) from None
    if shops is not None and envelope.shop not in shops.by_name:
        try:
            shops.get(envelope.shop)
        except UnknownShopError as exc:
            raise EventError("shop", str(exc)) from None
    if received_at is not None and envelope.occurred_at > received_at + MAX_CLOCK_SKEW:
        raise EventError("occurred_at", f"must not be more than {MAX_CLOCK_SKEW.days} day after it was received "
                                        f"({received_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ})")
    try:
        data = DATA_MODELS[envelope.type].model_validate(envelope.data)
    except ValidationError as exc:
        raise _first_error(exc, ("data",)) from None
    return Event(id=envelope.id, type=envelope.type, occurred_at=envelope.occurred_at, shop=envelope.shop, data=data,
                 raw=obj, text=text)


class _HugeInteger(Decimal):
    """An integer literal too long for Python's int-from-str limit: kept as a number so
    the field it sits in rejects it by name (`data.items[0].quantity: ...`)."""


_INT_DIGITS = 1000


def _parse_int(literal: str) -> int | Decimal:
    return int(literal) if len(literal) <= _INT_DIGITS else _HugeInteger(literal)


_HUGE_INT_DECODER = json.JSONDecoder(parse_int=_parse_int)


def load_json(text: str) -> Any:
    """`json.loads` that turns every failure into an `EventError` naming what broke."""
    try:
        try:
            return json.loads(text)  # the fast path: no Python call per integer
        except ValueError as exc:
            if isinstance(exc, json.JSONDecodeError) or "integer string conversion" not in str(exc):
                raise
            return _HUGE_INT_DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise EventError("", f"not valid JSON ({exc})") from None
    except RecursionError:
        raise EventError("", "not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # e.g. a float literal Python cannot read
        raise EventError("", f"not valid JSON ({exc})") from None


def decode_line(raw: bytes) -> str:
    """Strict UTF-8, one line at a time, so one bad line is rejected alone."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventError("", f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at position {exc.start})") from None


def parse_event(text: str | bytes, received_at: datetime | None = None, *, shops: Shops | None = None) -> Event:
    """Validate one raw JSON text (one line of JSON Lines, or one request body element).

    The text must be storable as it is (it becomes the inbox payload): bytes must be
    UTF-8, and a str must not hold unpaired surrogates."""
    if isinstance(text, bytes):
        if len(text) > MAX_EVENT_BYTES:
            raise EventError("", f"event is larger than {MAX_EVENT_BYTES // 1024} KiB")
        text = decode_line(text)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise EventError("", f"not valid UTF-8 text (unpaired surrogate at position {exc.start})") from None
    if size > MAX_EVENT_BYTES:
        raise EventError("", f"event is larger than {MAX_EVENT_BYTES // 1024} KiB")
    if "\x00" in text:  # outside a JSON string NUL is invalid anyway; inside one, JSON forbids it raw
        raise EventError("", "not valid JSON (a raw NUL character)")
    return validate_event(load_json(text), received_at, text, shops=shops)
