"""Rule 6: the message speaks the customer's language, in local formats, safely."""

from __future__ import annotations

import re
import string
import tomllib
from dataclasses import replace
from datetime import datetime, UTC
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel import Locale
from hypothesis import given, settings
from hypothesis import strategies as st

from coupons.messages import LANGUAGES, render_message, resolve_language
from coupons.model import CHANNELS, Message, MessageContext, Offer

LOCALES_DIR = Path(__file__).resolve().parents[2] / "coupons" / "locales"
REQUIRED = ("en", "es", "pt", "id", "th", "vi", "ar")
EXPIRES = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)  # valid through 1 December (UTC)


def refill(currency: str = "USD", price: str = "14.00", regular: str | None = None) -> Offer:
    return Offer(
        type="refill",
        sku="SHAMPOO-REFILL",
        product_name="Lavender Shampoo",
        currency=currency,
        price=Decimal(price),
        regular_price=Decimal(regular) if regular else None,
    )


def percent_off(currency: str = "USD", percent: str = "15", regular: str | None = None) -> Offer:
    return Offer(
        type="percent_off",
        sku="COFFEE-1KG",
        product_name="Coffee Beans",
        currency=currency,
        percent=Decimal(percent),
        regular_price=Decimal(regular) if regular else None,
    )


def second_half(currency: str = "USD", regular: str | None = None) -> Offer:
    return Offer(
        type="second_half_price",
        sku="MASK-5",
        product_name="Clay Mask",
        currency=currency,
        percent=Decimal(50),
        regular_price=Decimal(regular) if regular else None,
    )


def ctx(
    customer_locale: str | None = "en-US",
    market_language: str = "en",
    *,
    name: str | None = "Ana",
    offer: Offer | None = None,
    framing: str = "urgency",
    tz: str = "UTC",
    expires_at: datetime = EXPIRES,
    shop: str = "Encore",
) -> MessageContext:
    language, locale = resolve_language(customer_locale, market_language)
    return MessageContext(
        language=language,
        locale=locale,
        customer_name=name,
        offer=offer or refill(),
        code="K7QX-M3PA-HZ2W",
        expires_at=expires_at,
        timezone=tz,
        framing=framing,  # type: ignore[arg-type]
        shop_name=shop,
    )


def all_parts(m: Message) -> list[str]:
    return [p for p in (m.subject, m.text, m.html) if p is not None]


# ---------------------------------------------------------------------- resolve_language


@pytest.mark.parametrize(
    ("customer", "market", "expected"),
    [
        ("pt-BR", "en", ("pt", "pt_BR")),
        ("pt_BR", "en", ("pt", "pt_BR")),
        ("PT-br", "en", ("pt", "pt_BR")),
        ("pt-PT", "es", ("pt", "pt_PT")),
        ("pt", "en", ("pt", "pt_BR")),
        ("id", "en", ("id", "id_ID")),
        ("id-ID", "en", ("id", "id_ID")),
        ("in-ID", "en", ("id", "id_ID")),  # Java/Android's old code for Indonesian
        ("es-MX", "en", ("es", "es_MX")),
        ("es-419", "en", ("es", "es_419")),
        ("th", "en", ("th", "th_TH")),
        ("vi", "en", ("vi", "vi_VN")),
        ("ar", "en", ("ar", "ar_EG")),
        ("ar-SA", "en", ("ar", "ar_SA")),
        ("en_US.UTF-8", "id", ("en", "en_US")),
        ("de-CH-1996", "en", ("de", "de_CH")),
        # unsupported customer language -> market language
        ("zh-CN", "pt", ("pt", "pt_BR")),
        ("ja", "id", ("id", "id_ID")),
        (None, "th", ("th", "th_TH")),
        (None, "pt-BR", ("pt", "pt_BR")),
        # the fallback keeps the customer's region when babel has that pair
        ("nl-BE", "en", ("en", "en_BE")),
        # neither supported -> English
        ("zh-CN", "ja", ("en", "en_US")),
        (None, "xx", ("en", "en_US")),
    ],
)
def test_resolve_language(customer, market, expected):
    assert resolve_language(customer, market) == expected


@pytest.mark.parametrize("junk", ["", " ", "!!!", "e", "123", "-", "__", "und", "{{7*7}}", "\x00pt"])
def test_resolve_language_malformed_falls_back_to_market(junk):
    assert resolve_language(junk, "vi") == ("vi", "vi_VN")


def test_resolve_language_tolerates_trailing_junk_after_a_clear_language():
    assert resolve_language("en-", "vi") == ("en", "en_US")
    assert resolve_language("pt-BR-\x00", "vi") == ("pt", "pt_BR")


def test_resolve_language_non_string_input_falls_back():
    assert resolve_language(42, "id") == ("id", "id_ID")  # type: ignore[arg-type]
    assert resolve_language(None, None) == ("en", "en_US")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=40)), st.text(max_size=12))
def test_resolve_language_never_raises(customer, market):
    language, locale = resolve_language(customer, market)
    assert language in LANGUAGES
    assert Locale.parse(locale).language == language


# ------------------------------------------------------------------------ translations


def _placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def test_every_language_file_has_the_same_keys_and_placeholders():
    files = {p.stem: tomllib.loads(p.read_text("utf-8")) for p in LOCALES_DIR.glob("*.toml")}
    assert set(REQUIRED) <= set(files)
    assert set(files) == set(LANGUAGES)
    reference = files["en"]
    for lang, data in files.items():
        assert set(data) == set(reference), f"{lang}: keys differ from en"
        for key, text in data.items():
            if key == "units":  # one form per plural category: see the test below
                continue
            assert isinstance(text, str) and text.strip(), f"{lang}.{key} is empty"
            assert _placeholders(text) == _placeholders(reference[key]), f"{lang}.{key}"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_language_counts_units_in_each_of_its_plural_forms(lang):
    # A form per CLDR plural category of the language, as Babel knows them: a category
    # that a Babel release adds shows up here by name, not as a wrong message
    units = tomllib.loads((LOCALES_DIR / f"{lang}.toml").read_text("utf-8"))["units"]
    assert set(units) == set(Locale.parse(lang).plural_form.tags) | {"other"}
    for category, form in units.items():
        assert "product" in _placeholders(form) and _placeholders(form) <= {"count", "product"}, f"{lang}.{category}"


def test_translations_are_actually_translated():
    files = {p.stem: tomllib.loads(p.read_text("utf-8")) for p in LOCALES_DIR.glob("*.toml")}
    for lang, data in files.items():
        if lang != "en":
            assert data["offer_refill"] != files["en"]["offer_refill"], lang


# ------------------------------------------------------------------- local formats


@pytest.mark.parametrize(
    ("customer", "market", "offer", "price", "date"),
    [
        ("en-US", "en", refill("USD", "14.00"), "$14.00", "December 1, 2026"),
        ("en-GB", "en", refill("GBP", "14.00"), "£14.00", "1 December 2026"),
        ("id-ID", "id", refill("IDR", "132300"), "Rp132.300", "1 Desember 2026"),
        ("pt-BR", "pt", refill("BRL", "14.00"), "R$\xa014,00", "1 de dezembro de 2026"),
        ("es-MX", "es", refill("MXN", "280.50"), "$280.50", "1 de diciembre de 2026"),
        ("es-ES", "es", refill("EUR", "14.00"), "14,00\xa0€", "1 de diciembre de 2026"),
        ("th-TH", "th", refill("THB", "350"), "฿350.00", "1 ธันวาคม ค.ศ. 2026"),
        ("vi-VN", "vi", refill("VND", "150000"), "150.000\xa0₫", "1 tháng 12, 2026"),
        ("ar", "ar", refill("SAR", "50"), "50.00\xa0ر.س.", "1 ديسمبر 2026"),
        ("en-US", "en", refill("JPY", "1400"), "¥1,400", "December 1, 2026"),
    ],
)
@pytest.mark.parametrize("channel", CHANNELS)
def test_each_language_names_customer_product_code_price_and_date(
    customer, market, offer, price, date, channel
):
    m = render_message(ctx(customer, market, name="Ana", offer=offer), channel)
    for part in all_parts(m):
        if part is m.subject:
            continue
        assert "Ana" in part
        assert "Lavender Shampoo" in part
        assert "K7QX-M3PA-HZ2W" in part
        assert price in part
        assert date in part


def test_idr_is_shown_in_whole_rupiah():
    whole = render_message(ctx("id", "id", offer=refill("IDR", "132300")), "sms")
    assert "Rp132.300" in whole.text and "Rp132.300,00" not in whole.text
    # an amount with sen (an old stored offer, a hand-made one) is still shown in whole rupiah, half-up
    assert re.search(r"Rp132\.999(?![,\d])", render_message(ctx("id", "id", offer=refill("IDR", "132999.30")), "sms").text)
    assert re.search(r"Rp133\.000(?![,\d])", render_message(ctx("id", "id", offer=refill("IDR", "132999.50")), "sms").text)


@pytest.mark.parametrize(("regular", "price", "shown"), [("189000", "132300", "Rp132.300"),
                                                         ("189001", "132301", "Rp132.301")])
def test_idr_offer_price_and_message_agree(regular, price, shown):
    # What `encore deliveries` lists (offer.price) is what the customer reads, to the rupiah
    from coupons.markets import load_markets
    from coupons.model import Item
    from coupons.offers import choose_offer

    sea = load_markets().by_name["southeast_asia"]
    offer = choose_offer([Item(sku="serum", name="Serum", unit_price=Decimal(regular), quantity=1,
                               refill_sku="serum-refill")], "IDR", sea)
    assert str(offer.price) == price
    for channel in CHANNELS:
        message = render_message(ctx("id-ID", "id", offer=offer), channel)
        assert re.search(re.escape(shown) + r"(?![,\d])", message.text), message.text


def test_jpy_has_no_decimals():
    m = render_message(ctx("en-US", "en", offer=refill("JPY", "1400")), "sms")
    assert "¥1,400" in m.text
    assert "1,400.00" not in m.text


def test_refill_shows_regular_price_when_known():
    m = render_message(ctx("en-US", "en", offer=refill("USD", "14.00", "20.00")), "email")
    assert "$14.00" in m.text and "$20.00" in m.text


def test_percent_is_formatted_per_locale():
    en = render_message(ctx("en-US", "en", offer=percent_off("USD", "15")), "sms").text
    es = render_message(ctx("es-ES", "es", offer=percent_off("EUR", "15")), "sms").text
    assert "15%" in en and "Coffee Beans" in en
    assert "15\xa0%" in es


def test_percent_off_with_regular_price_shows_the_discounted_price():
    m = render_message(ctx("en-US", "en", offer=percent_off("USD", "10", "20.00")), "sms")
    assert "10%" in m.text and "$18.00" in m.text and "$20.00" in m.text


def test_fractional_percent_is_not_rounded():
    m = render_message(ctx("en-US", "en", offer=percent_off("USD", "12.5")), "sms")
    assert "12.5%" in m.text


def test_second_half_price_says_half_price():
    en = render_message(ctx("en-US", "en", offer=second_half()), "sms").text
    assert "half price" in en and "Clay Mask" in en
    pt = render_message(ctx("pt-BR", "pt", offer=second_half("BRL", "40.00")), "sms").text
    assert "metade do preço" in pt and "R$\xa020,00" in pt and "R$\xa040,00" in pt


@pytest.mark.parametrize(("customer", "market", "tz", "expires_at", "shown"), [
    # A zone's short name where the customer's locale commonly uses one...
    ("en-US", "en", "America/New_York", EXPIRES_NY_WINTER := datetime(2026, 12, 2, 5, tzinfo=UTC), "11:59\u202fPM EST"),
    ("en-US", "en", "America/New_York", datetime(2026, 7, 2, 4, tzinfo=UTC), "11:59\u202fPM EDT"),
    ("en-CA", "en", "America/Toronto", EXPIRES_NY_WINTER, "11:59\u202fp.m. EST"),
    ("id-ID", "id", "Asia/Jakarta", datetime(2026, 12, 1, 17, tzinfo=UTC), "1 Desember 2026 23.59 WIB"),
    ("id-ID", "id", "Asia/Makassar", datetime(2026, 12, 1, 16, tzinfo=UTC), "1 Desember 2026 23.59 WITA"),
    ("pt-BR", "pt", "America/Sao_Paulo", datetime(2026, 12, 2, 3, tzinfo=UTC), "1 de dezembro de 2026 23:59 BRT"),
    ("de-DE", "de", "Europe/Berlin", datetime(2026, 12, 1, 23, tzinfo=UTC), "1. Dezember 2026, 23:59 MEZ"),
    ("en-US", "en", "UTC", EXPIRES, "December 1, 2026, 11:59\u202fPM UTC"),
    # ...else its offset in the locale's own GMT format, never a bare "+0700"
    ("es-MX", "es", "America/Mexico_City", datetime(2026, 12, 2, 6, tzinfo=UTC), "1 de diciembre de 2026, 11:59\u202fp.m. GMT-6"),
    ("th-TH", "th", "Asia/Bangkok", datetime(2026, 12, 1, 17, tzinfo=UTC), "23:59 น. GMT+7"),
    ("vi-VN", "vi", "Asia/Ho_Chi_Minh", datetime(2026, 12, 1, 17, tzinfo=UTC), "23:59 GMT+7"),
    ("ar-SA", "ar", "Asia/Riyadh", datetime(2026, 12, 1, 21, tzinfo=UTC), "11:59 م غرينتش+3"),
    ("fr-FR", "fr", "Europe/Paris", datetime(2026, 12, 1, 23, tzinfo=UTC), "1 décembre 2026, 23:59 UTC+1"),
    ("en-US", "en", "Asia/Kathmandu", datetime(2026, 12, 1, 18, 15, tzinfo=UTC), "11:59\u202fPM GMT+5:45"),
    ("en-US", "en", "Etc/GMT+5", datetime(2026, 12, 2, 5, tzinfo=UTC), "11:59\u202fPM GMT-5"),
])
@pytest.mark.parametrize("channel", CHANNELS)
def test_the_expiry_time_names_the_customers_zone(customer, market, tz, expires_at, shown, channel):
    # A customer reading "ends 11:59 PM" cannot tell whose 11:59 PM it is
    m = render_message(ctx(customer, market, tz=tz, expires_at=expires_at), channel)
    for part in all_parts(m):
        assert shown in part
        assert not re.search(r"[+-]\d{4}\b", part)


@pytest.mark.parametrize(("customer", "market"), [("en-CA", "en"), ("es-MX", "es")])
@pytest.mark.parametrize("framing", ["urgency", "loyalty"])
def test_a_time_written_with_periods_does_not_double_the_sentences_period(customer, market, framing):
    # "11:59 p.m." at the end of a sentence read "11:59 p.m.." in two locales
    m = render_message(ctx(customer, market, framing=framing), "email")
    for part in all_parts(m):
        assert ".." not in part


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("offer", [refill(), percent_off(), second_half(regular="20.00")])
def test_a_product_or_shop_name_ending_with_a_period_ends_the_sentence_once(lang, offer):
    m = render_message(ctx(lang, "en", offer=replace(offer, product_name="Acme Inc."), shop="Acme Inc."), "email")
    for part in all_parts(m):
        assert ".." not in part
    assert "Acme Inc." in m.text


@pytest.mark.parametrize(("customer", "market", "phrase"), [
    ("en-US", "en", "Buy 2 Clay Mask items and"),
    ("es-MX", "es", "Compra 2 unidades de Clay Mask y"),
    ("pt-BR", "pt", "Leve 2 unidades de Clay Mask e"),
    ("fr-FR", "fr", "Achetez Clay Mask en 2 exemplaires et"),
    ("de-DE", "de", "Kaufen Sie 2 Stück Clay Mask und"),
    ("id-ID", "id", "Beli 2 Clay Mask dan"),
    ("th-TH", "th", "ซื้อ Clay Mask 2 ชิ้น"),
    ("vi-VN", "vi", "Mua 2 Clay Mask,"),
    ("ar-SA", "ar", "اشترِ قطعتين من Clay Mask"),  # Arabic's dual: no numeral
])
@pytest.mark.parametrize("channel", CHANNELS)
def test_two_units_are_counted_in_the_languages_plural_form(customer, market, phrase, channel):
    # "Buy two Travel Mug": a product's name cannot be inflected, so the count goes on a noun of ours
    m = render_message(ctx(customer, market, offer=second_half()), channel)
    assert phrase in m.text


@pytest.mark.parametrize(("lang", "count", "units"), [
    ("en", 1, "1 Clay Mask"), ("en", 3, "3 Clay Mask items"),
    ("ar", 1, "قطعة واحدة من Clay Mask"), ("ar", 2, "قطعتين من Clay Mask"), ("ar", 3, "3 قطع من Clay Mask"),
    ("ar", 11, "11 قطعة من Clay Mask"), ("ar", 100, "100 قطعة من Clay Mask"),
    ("es", 1, "1 unidad de Clay Mask"), ("es", 1000000, "1.000.000 de unidades de Clay Mask"),
    ("fr", 1, "Clay Mask en 1 exemplaire"), ("pt", 3, "3 unidades de Clay Mask"),
])
def test_each_count_takes_its_plural_category_form(lang, count, units):
    from coupons.messages import _units, translations

    assert _units(translations(lang), Locale.parse(lang), count, "Clay Mask") == units


def test_expiry_date_is_shown_in_the_customers_timezone():
    late_utc = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)  # 03:00 on 1 Dec in Jakarta
    m = render_message(ctx("id", "id", tz="Asia/Jakarta", expires_at=late_utc), "sms")
    assert "1 Desember 2026" in m.text
    early_utc = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 23:00 on 30 Nov in São Paulo
    m = render_message(ctx("pt-BR", "pt", tz="America/Sao_Paulo", expires_at=early_utc), "sms")
    assert "30 de novembro de 2026" in m.text


def test_unknown_timezone_does_not_break_rendering():
    m = render_message(ctx("en-US", "en", tz="Mars/Olympus"), "sms")
    assert "December 1, 2026" in m.text


# -------------------------------------------------------------------------- channels


def test_email_has_subject_text_and_html():
    m = render_message(ctx(), "email")
    assert m.subject and "\n" not in m.subject and "Lavender Shampoo" in m.subject
    assert m.text and "<" not in m.text
    assert m.html.startswith("<!DOCTYPE html>")
    assert '<html lang="en-US" dir="ltr">' in m.html
    assert "</html>" in m.html


@pytest.mark.parametrize("channel", ["sms", "whatsapp", "line", "telegram"])
def test_short_channels_are_plain_text_only(channel):
    m = render_message(ctx(), channel)
    assert m.subject is None and m.html is None
    assert "<" not in m.text


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("offer", [refill("USD", "14.00", "20.00"), percent_off(regular="20.00"), second_half()])
@pytest.mark.parametrize("framing", ["urgency", "loyalty"])
def test_every_language_offer_and_framing_renders_short_sms(lang, offer, framing):
    c = ctx(lang, "en", name="Maria Fernanda", offer=offer, framing=framing, shop="Glow Shop")
    for channel in CHANNELS:
        m = render_message(c, channel)
        assert "K7QX-M3PA-HZ2W" in m.text
        assert "{" not in m.text and "}" not in m.text  # no unfilled placeholder
    assert len(render_message(c, "sms").text) <= 300


def test_sms_shortens_very_long_product_names_only():
    long_name = "Organic Single-Origin Colombian Coffee Beans, Medium Roast, 1 kg Resealable Bag"
    offer = replace(refill(), product_name=long_name)
    sms = render_message(ctx(offer=offer), "sms").text
    assert long_name not in sms and "Organic Single-Origin" in sms and "…" in sms
    assert len(sms) <= 300
    assert long_name in render_message(ctx(offer=offer), "email").text


def test_unknown_channel_is_refused():
    with pytest.raises(ValueError):
        render_message(ctx(), "pigeon")


# --------------------------------------------------------------------------- greeting


def test_missing_name_gets_a_neutral_greeting():
    m = render_message(ctx(name=None), "email")
    assert m.text.startswith("Hi there,")
    assert "None" not in m.text and "None" not in m.html
    assert render_message(ctx(name="   "), "sms").text.startswith("Encore: Hi there,")
    assert render_message(ctx("pt-BR", "pt", name=None), "sms").text.startswith("Encore: Olá!")


# --------------------------------------------------------------------------- framing


def test_urgency_and_loyalty_wording_differ():
    urgency = render_message(ctx(framing="urgency"), "email")
    loyalty = render_message(ctx(framing="loyalty"), "email")
    assert "Limited time: ends December 1, 2026, 11:59\u202fPM UTC." in urgency.text
    assert "Limited time" in urgency.subject and "December 1, 2026" in urgency.subject
    assert "loyal customers" in loyalty.text and "loyal customers" in loyalty.subject
    assert "Limited time" not in loyalty.text
    assert "loyal" not in urgency.text
    assert "Valid until December 1, 2026, 11:59\u202fPM UTC." in loyalty.text  # loyalty still names the expiry


def test_indonesian_loyalty_framing():
    m = render_message(ctx("id-ID", "id", framing="loyalty", offer=refill("IDR", "132300")), "whatsapp")
    assert "Khusus untuk pelanggan setia kami" in m.text
    assert "Berlaku hingga 1 Desember 2026" in m.text


@pytest.mark.parametrize("lang", LANGUAGES)
def test_urgency_names_the_end_date_in_every_language(lang):
    c = ctx(lang, "en", framing="urgency")
    u = render_message(c, "sms").text
    lo = render_message(replace(c, framing="loyalty"), "sms").text
    assert u != lo
    date_re = re.compile(r"2026")
    assert date_re.search(u) and date_re.search(lo)


# -------------------------------------------------------------------------- escaping

NASTY = '<script>alert("x")</script> {{ 7*7 }} {% raw %} ${7*7} {name} & Co'


@pytest.mark.parametrize("channel", CHANNELS)
def test_user_strings_are_never_evaluated(channel):
    offer = replace(refill(), product_name="Tea {{7*7}} <b>")
    name = "{{ 7*7 }} <script>"  # short enough that SMS keeps it whole
    m = render_message(ctx(name=name, offer=offer, shop="Shop {{ 6*7 }}"), channel)
    for part in all_parts(m):
        assert "49" not in part and "42" not in part
    # plain text parts carry the strings literally
    assert name in m.text
    assert "Tea {{7*7}} <b>" in m.text


def test_html_part_escapes_user_strings():
    offer = replace(refill(), product_name="Tea {{7*7}} <b>")
    m = render_message(ctx(name=NASTY, offer=offer, shop="A&B <i>"), "email")
    assert "<script>" not in m.html and "<b>" not in m.html and "<i>" not in m.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; {{ 7*7 }}" in m.html
    assert "Tea {{7*7}} &lt;b&gt;" in m.html
    assert "A&amp;B &lt;i&gt;" in m.html
    assert "{name}" in m.html  # a brace in a name is not a placeholder
    assert NASTY in m.text
    assert "49" not in m.html


def test_arabic_html_is_right_to_left():
    m = render_message(ctx("ar", "ar", framing="loyalty", offer=refill("SAR", "50")), "email")
    assert 'dir="rtl"' in m.html
    assert 'lang="ar-EG"' in m.html
    assert "عرض حصري لعملائنا الأوفياء" in m.text
    for lang in ("en", "th", "id"):
        assert 'dir="ltr"' in render_message(ctx(lang, "en"), "email").html


# ---------------------------------------------------------------- expiry and prices


@pytest.mark.parametrize(
    ("customer", "market", "tz", "last_day", "last_minute"),
    [
        ("en-US", "en", "America/New_York", "March 17, 2026", "11:59\u202fPM"),
        ("es-ES", "es", "Europe/Madrid", "17 de marzo de 2026", "23:59"),
        ("pt-BR", "pt", "America/Sao_Paulo", "17 de março de 2026", "23:59"),
        ("id-ID", "id", "Asia/Jakarta", "17 Maret 2026", "23.59"),
        ("th-TH", "th", "Asia/Bangkok", "17 มีนาคม", "23:59"),
        ("vi-VN", "vi", "Asia/Ho_Chi_Minh", "17 tháng 3, 2026", "23:59"),
        ("ar-SA", "ar", "Asia/Riyadh", "17 مارس 2026", "11:59"),
        ("fr-FR", "fr", "Europe/Paris", "17 mars 2026", "23:59"),
        ("de-DE", "de", "Europe/Berlin", "17. März 2026", "23:59"),
    ],
)
@pytest.mark.parametrize("framing", ["urgency", "loyalty"])
def test_the_message_says_the_coupon_is_valid_to_the_end_of_the_named_day(
    customer, market, tz, last_day, last_minute, framing
):
    from coupons.timing import coupon_expires_at

    # Given a coupon triggered at 10:00 local on 10 March, valid 7 days
    trigger = datetime(2026, 3, 10, 10, 0, tzinfo=ZoneInfo(tz))
    expires_at = coupon_expires_at(trigger, 7, tz)
    # When it is rendered in the customer's zone
    m = render_message(ctx(customer, market, tz=tz, expires_at=expires_at, framing=framing), "sms")
    # Then it names the day and the last minute of that day, not the trigger's time of day
    assert last_day in m.text and last_minute in m.text
    assert "9:59" not in m.text and "10:00" not in m.text


def test_sek_refill_and_percent_off_show_the_same_rounding():
    # SEK 99.90: the refill (0.70) and 30% off are the same price, 69,93 kr, not 70 kr
    refill_message = render_message(ctx("sv-SE", "en", offer=refill("SEK", "69.93", "99.90")), "sms").text
    percent = render_message(ctx("sv-SE", "en", offer=percent_off("SEK", "30", "99.90")), "sms").text
    assert "69.93" in refill_message.replace(",", ".") and "69.93" in percent.replace(",", ".")


def test_a_regular_price_that_rounds_to_nothing_is_not_shown():
    m = render_message(ctx("en-US", "en", offer=percent_off("USD", "10", "0.004")), "sms").text
    assert "$0.00" not in m and "10%" in m


# ------------------------------------------------------- rendered once per shape

SPECIAL_NAMES = [
    '<b>Ana</b> & "Bo" \'Cy\'', "{name} {code} {0}", "{{ 7*7 }}", "محمد العلي", "שרה", "Ana 🎉👍🏽",
    "", "   ", "\n\t", "Ana\nMaria  de\tSouza", "A" * 29, "B" * 30, "C" * 31, "Dé" * 40, "Zoë " * 12,
]
CUSTOMER_LOCALES = [None, "en-US", "en-GB", "es-MX", "es-ES", "pt-BR", "pt-PT", "id-ID", "th-TH", "vi-VN",
                    "ar-SA", "ar", "fr-FR", "fr-CA", "de-DE", "de-CH", "sv-SE", "ja-JP", "zz", "in-ID"]
CURRENCIES = ["USD", "EUR", "IDR", "JPY", "SEK", "BRL", "KWD", "VND", "THB", "MXN"]
ZONES = ["UTC", "America/New_York", "Asia/Jakarta", "Asia/Riyadh", "America/Sao_Paulo", "Europe/Berlin",
         "Pacific/Chatham", "Not/AZone"]

amounts = st.one_of(st.none(), st.decimals(min_value=0, max_value=10**7, places=3, allow_nan=False,
                                           allow_infinity=False))
offers = st.builds(
    Offer,
    type=st.sampled_from(["refill", "percent_off", "second_half_price"]),
    sku=st.sampled_from(["SHAMPOO-REFILL", "sku<&>"]),
    product_name=st.one_of(st.sampled_from(["Lavender Shampoo", "", "Tea {{7*7}} <b> & 'x'", "ש" * 50]),
                           st.text(max_size=60)),
    currency=st.sampled_from(CURRENCIES),
    price=amounts,
    percent=st.one_of(st.none(), st.decimals(min_value=1, max_value=99, places=2)),
    regular_price=amounts,
)
names = st.one_of(st.none(), st.sampled_from(SPECIAL_NAMES), st.text(max_size=50))
codes = st.one_of(st.from_regex(r"[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}", fullmatch=True), st.text(max_size=20))
urls = st.one_of(st.none(), st.just(""), st.builds(lambda t: f"https://encore.example.com/unsubscribe/{t}",
                                                    st.from_regex(r"[A-Za-z0-9_-]{10,40}", fullmatch=True)),
                 st.text(max_size=30))


@st.composite
def message_contexts(draw) -> MessageContext:
    language, locale = resolve_language(draw(st.sampled_from(CUSTOMER_LOCALES)), draw(st.sampled_from(LANGUAGES)))
    return MessageContext(
        language=language, locale=locale, customer_name=draw(names), offer=draw(offers), code=draw(codes),
        expires_at=draw(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1),
                                     timezones=st.just(UTC))),
        timezone=draw(st.sampled_from(ZONES)), framing=draw(st.sampled_from(["urgency", "loyalty"])),
        shop_name=draw(st.one_of(st.just("Encore"), st.sampled_from(["A&B <i>", "{shop}"]), st.text(max_size=20))),
        unsubscribe_url=draw(urls),
    )


def outcome(render, context: MessageContext, channel: str) -> Message | tuple[str, str]:
    try:
        return render(context, channel)
    except (ValueError, TypeError, ArithmeticError) as error:
        return type(error).__name__, str(error)


@settings(max_examples=400, deadline=None)
@given(message_contexts(), st.sampled_from(CHANNELS))
def test_a_message_rendered_once_per_shape_is_the_message_rendered_directly(context, channel):
    from coupons.messages import render_message_uncached

    # Given another customer of the same shape (same offer, shop, date...) rendered first
    other = replace(context, customer_name="Decoy Name" if (context.customer_name or "").strip() else
                    context.customer_name, code="DECOY-CODE",
                    unsubscribe_url="https://decoy.example.com/u/x" if context.unsubscribe_url else
                    context.unsubscribe_url)
    outcome(render_message, other, channel)
    # Then this customer's message is byte for byte what rendering it directly gives
    assert outcome(render_message, context, channel) == outcome(render_message_uncached, context, channel)


def test_a_name_that_looks_like_a_placeholder_is_written_as_it_is():
    from coupons.messages import _HOLE

    name = f"{_HOLE['code']} {_HOLE['url']}<"
    context = replace(ctx(name=name), unsubscribe_url="https://encore.example.com/unsubscribe/t0k3n")
    m = render_message(context, "email")
    assert f"Hi {name}," in m.text
    assert f"Hi {_HOLE['code']} {_HOLE['url']}&lt;," in m.html
    assert m.text.count("K7QX-M3PA-HZ2W") == 1 and m.text.count("t0k3n") == 1
