"""Plain value types shared by the domain, the store and the channels.

They carry no session, no broker and no clock: everything that decides what a
customer receives takes these and returns these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

CHANNELS: tuple[str, ...] = ("email", "sms", "whatsapp", "line", "telegram")
"""Every channel Encore knows, in the order the settings list them."""

ADDRESS_FIELD: dict[str, str] = {
    "email": "email",
    "sms": "phone",
    "whatsapp": "whatsapp",
    "line": "line_id",
    "telegram": "telegram_id",
}
"""Which customer attribute holds the recipient for each channel (and the
placeholder name in that channel's Apprise URL template)."""

OfferType = Literal["refill", "second_half_price", "percent_off"]
Framing = Literal["urgency", "loyalty"]


@dataclass(frozen=True)
class Customer:
    id: str
    country: str
    name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    email: str | None = None
    phone: str | None = None
    whatsapp: str | None = None
    line_id: str | None = None
    telegram_id: str | None = None
    consent: frozenset[str] = field(default_factory=frozenset)
    region: str | None = None  # ISO 3166-2 (US-FL): a state's SMS hours and, in the US, its zone (rule 17)

    def address(self, channel: str) -> str | None:
        return getattr(self, ADDRESS_FIELD[channel])


@dataclass(frozen=True)
class Item:
    sku: str
    name: str
    unit_price: Decimal
    quantity: int
    refill_sku: str | None = None


@dataclass(frozen=True)
class Offer:
    """What the coupon gives: one plain sentence, no conditions beyond the SKU.

    `price` is set for a refill (the refill's price in major units, already
    rounded to the currency's minor unit); `percent` for the two others
    (50 for second_half_price).
    """

    type: OfferType
    sku: str
    product_name: str
    currency: str
    price: Decimal | None = None
    percent: Decimal | None = None
    regular_price: Decimal | None = None


@dataclass(frozen=True)
class WhatsAppTemplateMessage:
    """A coupon as the WhatsApp Cloud API takes it outside a conversation: the
    seller's approved template, its body parameters in order ({{1}}, {{2}}, ...) and
    the code for its copy-code button (built by `coupons.whatsapp.template_message`)."""

    name: str  # the approved template's name at Meta
    language: str  # its language code at Meta, e.g. "en_US", "id"
    body: tuple[str, ...]  # the text of each body parameter, already cleaned
    coupon_code: str  # alphanumeric, at most 15 characters
    button_index: int = 0  # the copy-code button's place among the template's buttons


@dataclass(frozen=True)
class Message:
    """A rendered message; `subject`, `html` and `headers` only for email.

    `whatsapp_template` is set for WhatsApp when the seller's templates file gives
    one: a sender for the Cloud API sends that template, any other sender the text."""

    text: str
    subject: str | None = None
    html: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    whatsapp_template: WhatsAppTemplateMessage | None = None


@dataclass(frozen=True)
class MessageContext:
    """Everything a template needs to say the offer to one customer."""

    language: str  # resolved language code: en, es, pt, id, th, vi, ar
    locale: str  # babel locale for formats, e.g. "pt_BR", "id_ID", "en_US"
    customer_name: str | None
    offer: Offer
    code: str
    expires_at: datetime  # aware
    timezone: str  # IANA zone the expiry is shown in
    framing: Framing
    shop_name: str = "Encore"
    unsubscribe_url: str | None = None  # set when ENCORE_PUBLIC_URL is (rule 6)
