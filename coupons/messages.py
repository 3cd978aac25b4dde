"""Say an offer to one customer in their language, on one channel.

Wording lives in `coupons/locales/<lang>.toml` (one file per language, same keys
everywhere) and layout in `coupons/templates/`. User-provided strings (customer,
product and shop names) only ever enter as values: they are never parsed as
templates or format strings, and the HTML part escapes them.
"""

from __future__ import annotations

import copy
import re
import secrets
import tomllib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, UTC
from decimal import Decimal
from functools import cache, lru_cache
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale, localedata
from babel.core import get_global
from babel.dates import format_date, format_time, get_datetime_format, get_timezone_gmt, get_timezone_name
from babel.numbers import NumberPattern, format_decimal, format_percent
from jinja2 import Environment, PackageLoader, StrictUndefined, Template, pass_eval_context
from markupsafe import escape

from coupons.model import Message, MessageContext
from coupons.money import discounted, round_to_minor_unit, shown_digits

LANGUAGES: tuple[str, ...] = ("en", "es", "pt", "id", "th", "vi", "ar", "fr", "de")
"""Languages with a translation file; anything else falls back (rule 6)."""

DEFAULT_LANGUAGE = "en"
SHORT_CHANNELS: tuple[str, ...] = ("sms", "whatsapp", "line", "telegram")

# SMS is paid per segment: long names are shortened there, nowhere else.
_SMS_MAX_PRODUCT = 40
_SMS_MAX_NAME = 30

# Old ISO 639 codes still sent by Java/Android ("in-ID" is Indonesian).
_LANGUAGE_ALIASES = {"in": "id", "iw": "he", "ji": "yi"}

# language[-Script][-REGION], then anything (variants, extensions, ".UTF-8", "@euro").
_TAG = re.compile(
    r"([A-Za-z]{2,3})(?:[-_]([A-Za-z]{4}))?(?:[-_]([A-Za-z]{2}|[0-9]{3}))?(?=$|[-_.@])"
)


# --------------------------------------------------------------------------- language


def resolve_language(customer_locale: str | None, market_language: str) -> tuple[str, str]:
    """Pick (language, babel locale): the customer's if we speak it, else the
    market's, else English. Never raises: junk input just falls back."""
    if not isinstance(customer_locale, str):
        customer_locale = None
    if not isinstance(market_language, str):
        market_language = DEFAULT_LANGUAGE
    return _resolve(customer_locale, market_language)


@lru_cache(maxsize=4096)
def _resolve(customer_locale: str | None, market_language: str) -> tuple[str, str]:
    customer = _parse_tag(customer_locale)
    market = _parse_tag(market_language)
    customer_region = customer[1] if customer else None
    if customer and customer[0] in LANGUAGES:
        return customer[0], _locale_name(customer[0], customer_region)
    # A fallback language still keeps the customer's region when babel knows the
    # pair (fr-CA customer, English market -> en_CA formats), else the market's.
    if market and market[0] in LANGUAGES:
        return market[0], _locale_name(market[0], customer_region, market[1])
    return DEFAULT_LANGUAGE, _locale_name(DEFAULT_LANGUAGE, customer_region)


def _parse_tag(tag: str | None) -> tuple[str, str | None] | None:
    if not tag:
        return None
    m = _TAG.match(tag.strip())
    if not m:
        return None
    lang = m.group(1).lower()
    lang = _LANGUAGE_ALIASES.get(lang, lang)
    region = m.group(3).upper() if m.group(3) else None
    return lang, region


def _locale_name(lang: str, *regions: str | None) -> str:
    for region in regions:
        if region and localedata.exists(f"{lang}_{region}"):
            return f"{lang}_{region}"
    likely = get_global("likely_subtags").get(lang)  # e.g. "pt_Latn_BR"
    if likely:
        region = likely.split("_")[-1]
        if localedata.exists(f"{lang}_{region}"):
            return f"{lang}_{region}"
    return lang


@cache
def _babel_locale(locale_name: str, language: str) -> Locale:
    try:
        return Locale.parse(locale_name.replace("-", "_"))
    except (ValueError, TypeError, LookupError):
        return Locale.parse(_resolve(language, DEFAULT_LANGUAGE)[1])


@cache
def text_direction(language: str) -> str:
    """`rtl` or `ltr`: the `dir` of an HTML page or email written in `language`."""
    try:
        rtl = Locale.parse(language).character_order == "right-to-left"
    except (ValueError, TypeError, LookupError):
        rtl = False
    return "rtl" if rtl else "ltr"


# ------------------------------------------------------------------------ translations


@cache
def translations(language: str) -> dict[str, str]:
    """The strings of one language, read once from its packaged TOML file."""
    if language not in LANGUAGES:
        raise KeyError(language)
    path = resources.files("coupons") / "locales" / f"{language}.toml"
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    return _flatten(data)


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A table's strings under dotted keys: `[units] one = ...` is "units.one"."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


# ---------------------------------------------------------------------------- formats


@cache
def _currency_pattern(locale: Locale, digits: int) -> NumberPattern:
    pattern = copy.copy(locale.currency_formats["standard"])
    pattern.frac_prec = (digits, digits)
    return pattern


def format_money(amount: Decimal, currency: str, locale: Locale) -> str:
    """Local currency format, rounded and with the decimals of the one money rule
    (`coupons.money`): Rp132.300 (not Rp132.300,00), 69,93 kr, $14.00."""
    amount = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    currency = currency.upper()
    amount = round_to_minor_unit(amount, currency)
    return _currency_pattern(locale, shown_digits(amount, currency)).apply(
        amount, locale, currency=currency, currency_digits=False
    )


def _zone(name: str) -> Any:
    try:
        return ZoneInfo(name)
    except (ValueError, LookupError, TypeError):  # ZoneInfoNotFoundError is a KeyError
        return UTC


def _expiry_date(expires_at: datetime, zone: str, locale: Locale) -> str:
    """The last moment the coupon is valid, as local date and time with its zone
    ("March 17, 2026, 11:59 PM EDT", "17 Maret 2026 23.59 WIB"): a coupon is valid
    through the end of the named day (see `coupons.timing.coupon_expires_at`), and the
    message says so, in a zone the customer can tell from another one."""
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    # expires_at is the first instant it is no longer valid; show the minute before.
    last = (expires_at - timedelta(microseconds=1)).astimezone(_zone(zone))
    pattern = str(get_datetime_format("long", locale=locale)).replace("'", "")
    # The zone follows the time after a space, as in every shipped locale's CLDR long
    # time format ("h:mm:ss a z", "HH.mm.ss z", "H นาฬิกา mm นาที ss วินาที z").
    time_of_day = f"{format_time(last, format='short', locale=locale)} {_zone_label(last, locale)}"
    return (pattern.replace("{0}", time_of_day)
            .replace("{1}", format_date(last.date(), format="long", locale=locale)))


def _zone_label(moment: datetime, locale: Locale) -> str:
    """The zone as the locale names it: its short name where that is in common use there
    (EST, WIB, MEZ, BRT; CLDR via Babel), else the offset in the locale's own GMT format
    (GMT+7, UTC+1, GMT+5:45), never Babel's bare "+0700"."""
    name = get_timezone_name(moment, width="short", locale=locale)
    if name != get_timezone_gmt(moment, width="short", locale=locale):
        return name
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    hours, rest = divmod(abs(minutes), 60)
    digits = "" if not minutes else f"{'-' if minutes < 0 else '+'}{hours}" + (f":{rest:02d}" if rest else "")
    return str(locale.zone_formats["gmt"]) % digits


PAIR = 2
"""The second-half-price offer is about two units (rule 3)."""


def _units(t: dict[str, str], locale: Locale, count: int, product: str) -> str:
    """`count` units of `product`, in the form the language uses for that number (CLDR
    plural categories, by Babel: English one/other, Arabic zero/one/two/few/many/other).
    A product's name is the shop's and cannot be inflected ("two Travel Mug"), so each
    form counts a noun of ours and names the product beside it."""
    form = t.get(f"units.{locale.plural_form(count)}", t["units.other"])
    return form.format(count=format_decimal(count, locale=locale), product=product)


def _clean(value: str | None, limit: int | None = None) -> str | None:
    """One line of text (names with newlines would break SMS), optionally shortened."""
    if value is None:
        return None
    value = " ".join(str(value).split())
    if not value:
        return None
    if limit is not None and len(value) > limit:
        value = value[: limit - 1].rstrip() + "…"
    return value


# --------------------------------------------------------------------------- templates


_MAY_END_A_SENTENCE = ("date", "product", "units", "shop")
"""Values of a message's shape that can end with their own period ("11:59 p.m.",
"Acme Inc."); the customer's name and code are never among them (see `_Shaped`)."""


@pass_eval_context
def _fill(eval_ctx: Any, text: str, values: dict[str, Any]) -> str:
    """Fill a translation's {placeholders}; in HTML both text and values are escaped.

    Only our own translation strings are ever used as format strings. A value that ends
    with a period where the sentence ends takes the sentence's period ("ends 11:59 p.m.",
    not "p.m..").
    """
    for key in _MAY_END_A_SENTENCE:
        value = values.get(key)
        if isinstance(value, str) and value.endswith(".") and f"{{{key}}}." in text:
            text = text.replace(f"{{{key}}}.", f"{{{key}}}")
    if eval_ctx.autoescape:
        return escape(text).format(**values)
    return text.format(**values)


@cache
def _templates() -> dict[str, Template]:
    """Built once: compiling templates per message would dominate the hot path."""
    loader = PackageLoader("coupons", "templates")
    common: dict[str, Any] = dict(
        loader=loader,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    text_env = Environment(autoescape=False, **common)
    html_env = Environment(autoescape=True, **common)
    for env in (text_env, html_env):
        env.filters["fill"] = _fill
    return {
        "subject": text_env.get_template("email_subject.txt.j2"),
        "email_text": text_env.get_template("email.txt.j2"),
        "email_html": html_env.get_template("email.html.j2"),
        "sms": text_env.get_template("sms.txt.j2"),
        "chat": text_env.get_template("chat.txt.j2"),
    }


# ---------------------------------------------------------------------------- render


def render_message(ctx: MessageContext, channel: str) -> Message:
    """The coupon message for one customer on one channel (rule 6).

    The same as `render_message_uncached`, byte for byte, at a fraction of the CPU:
    the messages of one stream or campaign differ only in the customer's name, code
    and unsubscribe link, so the rest is rendered once per shape (`_shaped`) and
    those three are filled in."""
    _check_channel(channel)
    name = _clean(ctx.customer_name, _SMS_MAX_NAME if channel == "sms" else None)
    url = ctx.unsubscribe_url or None
    # A value that is empty or starts or ends with whitespace could meet one of the
    # template's strip()s, which a placeholder would not: such a message (never seen
    # in practice: codes and URLs are ours) is rendered directly.
    if not _fits_hole(ctx.code) or (url is not None and not _fits_hole(url)):
        return render_message_uncached(ctx, channel)
    shape = replace(ctx, customer_name=_HOLE["name"] if name else None, code=_HOLE["code"],
                    unsubscribe_url=_HOLE["url"] if url else None)
    # Equal Decimals can be written differently (-0 and 0): the key tells them apart.
    offer = ctx.offer
    shaped = _shaped(shape, channel, (str(offer.price), str(offer.percent), str(offer.regular_price)))
    if shaped is None:
        return render_message_uncached(ctx, channel)
    return shaped.fill(name, ctx.code, url)


@dataclass(frozen=True)
class FilledValues:
    """What the {placeholders} of a language's strings take for one customer on one
    channel: `values` holds name, product, shop, code, date, price, regular_price and
    percent (None where the offer has none), `offer_key` names the offer's sentence.

    The rendered messages and the WhatsApp template parameters (`coupons.whatsapp`)
    both say the offer from these, so the two never disagree."""

    language: str
    values: dict[str, Any]
    offer_key: str

    def say(self, key: str) -> str:
        """One of the language's strings, filled in (plain text, not escaped)."""
        return translations(self.language)[key].format(**self.values)


def fill_values(ctx: MessageContext, channel: str) -> FilledValues:
    """The placeholder values of `ctx` on `channel` (SMS shortens long names)."""
    _check_channel(channel)
    language = ctx.language if ctx.language in LANGUAGES else _resolve(ctx.locale, "")[0]
    locale = _babel_locale(ctx.locale or language, language)
    offer = ctx.offer
    sms = channel == "sms"

    name = _clean(ctx.customer_name, _SMS_MAX_NAME if sms else None)
    product = _clean(offer.product_name, _SMS_MAX_PRODUCT if sms else None) or offer.sku
    values: dict[str, Any] = {
        "name": name,
        "product": product,
        "shop": _clean(ctx.shop_name) or "Encore",
        "code": ctx.code,
        "date": _expiry_date(ctx.expires_at, ctx.timezone, locale),
        "price": None,
        "regular_price": None,
        "percent": None,
        "units": _units(translations(language), locale, PAIR, product),
    }

    if offer.regular_price is not None and offer.regular_price > 0:
        values["regular_price"] = format_money(offer.regular_price, offer.currency, locale)
    if offer.type == "refill":
        if offer.price is None:
            raise ValueError("refill offer without a price")
        values["price"] = format_money(offer.price, offer.currency, locale)
        offer_key = "offer_refill"
    elif offer.type in ("percent_off", "second_half_price"):
        percent = offer.percent
        if percent is None:
            if offer.type == "percent_off":
                raise ValueError("percent_off offer without a percent")
            percent = Decimal(50)
        percent = Decimal(str(percent))
        values["percent"] = format_percent(
            (percent / 100).normalize(), locale=locale, decimal_quantization=False
        )
        price = offer.price
        if price is None and offer.regular_price is not None and offer.regular_price > 0:
            price = discounted(offer.regular_price, percent, offer.currency)
        if price is not None and price > 0:
            values["price"] = format_money(price, offer.currency, locale)
        offer_key = f"offer_{offer.type}"
    else:
        raise ValueError(f"unknown offer type: {offer.type!r}")
    if values["regular_price"] is not None and values["price"] is not None:
        offer_key += "_with_regular" if offer.type == "refill" else "_with_price"
    return FilledValues(language=language, values=values, offer_key=offer_key)


def render_message_uncached(ctx: MessageContext, channel: str) -> Message:
    """`render_message` straight through the templates, every time."""
    filled = fill_values(ctx, channel)
    language, values, offer_key = filled.language, filled.values, filled.offer_key
    t = translations(language)
    locale = _babel_locale(ctx.locale or language, language)
    name = values["name"]
    sms = channel == "sms"

    urgency = ctx.framing == "urgency"
    context: dict[str, Any] = {
        "t": t,
        "a": values,
        "greeting_key": "greeting" if name else "greeting_anonymous",
        "offer_key": offer_key,
        # Urgency names the end in its own line; loyalty still shows the expiry.
        "framing_keys": ("urgency",) if urgency else ("loyalty", "valid_until"),
        "subject_key": "subject_urgency" if urgency else "subject_loyalty",
        "unsubscribe_url": ctx.unsubscribe_url,
    }

    templates = _templates()
    if channel == "email":
        subject = templates["subject"].render(context).strip()
        text = templates["email_text"].render(context).strip() + "\n"
        region = locale.territory if locale.language == language else None
        html = templates["email_html"].render(
            context,
            subject=subject,
            lang_tag=f"{language}-{region}" if region else language,
            direction=text_direction(language),
        )
        return Message(text=text, subject=subject, html=html, headers=unsubscribe_headers(ctx.unsubscribe_url))
    template = templates["sms" if sms else "chat"]
    text = template.render(context).strip()
    if ctx.unsubscribe_url:
        text += ("\n" if sms else "\n\n") + t["opt_out_line"].format(url=ctx.unsubscribe_url)
    return Message(text=text)


def _check_channel(channel: str) -> None:
    if channel != "email" and channel not in SHORT_CHANNELS:
        raise ValueError(f"unknown channel: {channel!r}")


# ------------------------------------------------------------------- render per shape

# Placeholders for the per-customer values: letters and digits only, so no escaping,
# formatting, cleaning or shortening (30 characters at most) changes them, and a
# random part per process, so no product or shop name can contain one by chance.
_NONCE = secrets.token_hex(6)
_HOLE = {"name": f"x{_NONCE}n", "code": f"x{_NONCE}c", "url": f"x{_NONCE}u"}
_HOLES = re.compile(f"x{_NONCE}([ncu])")


def _fits_hole(value: str) -> bool:
    return bool(value) and value == value.strip()


@dataclass(frozen=True)
class _Shaped:
    """A message rendered with placeholders, split at them: text between holes at even
    positions, the hole's letter ("n", "c", "u") at odd positions."""

    text: tuple[str, ...]
    subject: tuple[str, ...] | None
    html: tuple[str, ...] | None  # email only

    def fill(self, name: str | None, code: str, url: str | None) -> Message:
        """Put the values in, in one pass: a value is never looked at again, so a name
        that happens to contain a placeholder stays as it is. The HTML part gets them
        escaped as the template's autoescape and `_fill` would (markupsafe, per
        character)."""
        values = {"n": name or "", "c": code, "u": url or ""}
        html = None
        if self.html is not None:
            html = _fill_holes(self.html, {k: str(escape(v)) for k, v in values.items()})
        return Message(
            text=_fill_holes(self.text, values),
            subject=None if self.subject is None else _fill_holes(self.subject, values),
            html=html,
            headers=unsubscribe_headers(url) if self.html is not None else (),
        )


def _split_at_holes(rendered: str | None) -> tuple[str, ...] | None:
    return None if rendered is None else tuple(_HOLES.split(rendered))


def _fill_holes(pieces: tuple[str, ...], values: dict[str, str]) -> str:
    if len(pieces) == 1:
        return pieces[0]
    filled = list(pieces)
    filled[1::2] = [values[hole] for hole in pieces[1::2]]
    return "".join(filled)


@lru_cache(maxsize=512)
def _shaped(shape: MessageContext, channel: str, _exact: tuple[str, str, str]) -> _Shaped | None:
    """The message of one shape, with placeholders; None if a user string of the
    shape contains the process's placeholder marker (render that one directly)."""
    if any(_NONCE in (s or "") for s in (shape.offer.product_name, shape.offer.sku, shape.shop_name)):
        return None
    message = render_message_uncached(shape, channel)
    text, subject, html = (_split_at_holes(part) for part in (message.text, message.subject, message.html))
    assert text is not None
    return _Shaped(text=text, subject=subject, html=html)


def unsubscribe_headers(url: str | None) -> tuple[tuple[str, str], ...]:
    """RFC 8058 one-click unsubscribe: mailbox providers POST to the URL themselves."""
    if not url:
        return ()
    return (("List-Unsubscribe", f"<{url}>"), ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
