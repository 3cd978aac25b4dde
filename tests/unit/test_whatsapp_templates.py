"""Rule 16: a WhatsApp coupon is the seller's approved template, filled as Meta expects."""

from __future__ import annotations

from datetime import datetime, UTC
from decimal import Decimal

import pytest

from coupons.codes import normalize_code
from coupons.messages import render_message, resolve_language
from coupons.model import MessageContext, Offer, WhatsAppTemplateMessage
from coupons.whatsapp import (
    DEFAULT_BODY,
    MAX_NAME_PARAMETER,
    MAX_PARAMETER,
    WhatsAppTemplatesError,
    clean_parameter,
    cloud_api_request,
    copy_code,
    is_us_blocked,
    load_templates,
    parse_templates,
    template_message,
)

SPEC_FILE = """
default = "en"                  # the language used where a customer's has no template
[templates.en]
name = "repurchase_coupon"      # the approved template's name
language = "en_US"              # its language code at Meta
body = ["customer_name", "product", "offer", "expires"]
[templates.id]
name = "kupon_belanja_lagi"
language = "id"
"""

CODE = "K7QXM-3PAHZ-2WRTY"
EXPIRES = datetime(2026, 12, 2, tzinfo=UTC)


def context(locale: str = "id-ID", market: str = "id", *, name: str | None = "Sari",
            product: str = "Serum Wajah", offer: Offer | None = None) -> MessageContext:
    language, babel_locale = resolve_language(locale, market)
    return MessageContext(
        language=language,
        locale=babel_locale,
        customer_name=name,
        offer=offer or Offer(type="refill", sku="SERUM-R", product_name=product, currency="IDR",
                             price=Decimal("132300")),
        code=CODE,
        expires_at=EXPIRES,
        timezone="Asia/Jakarta",
        framing="loyalty",
    )


@pytest.fixture()
def templates(tmp_path):
    path = tmp_path / "whatsapp.toml"
    path.write_text(SPEC_FILE, encoding="utf-8")
    return load_templates(path)


# ------------------------------------------------------------------------------ the file


def test_the_spec_example_file_loads_with_the_default_body_order(templates):
    assert templates.default == "en"
    assert templates.templates["en"].name == "repurchase_coupon"
    assert templates.templates["en"].meta_language == "en_US"
    # No `body` in [templates.id]: {{1}}..{{4}} are name, product, offer, expiry.
    assert templates.templates["id"].body == DEFAULT_BODY == ("customer_name", "product", "offer", "expires")
    assert templates.templates["id"].button_index == 0


def test_a_language_without_a_template_gets_the_default_one(templates):
    assert templates.for_language("id").name == "kupon_belanja_lagi"
    assert templates.for_language("th").name == "repurchase_coupon"


def test_the_check_names_the_market_languages_without_their_own_template(templates):
    # `encore check` names these (the markets' languages, ask the markets file).
    assert templates.missing(["en", "id", "th", "vi", "th"]) == ["th", "vi"]


def _problem(text: str, tmp_path) -> str:
    path = tmp_path / "seller.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(WhatsAppTemplatesError) as caught:
        load_templates(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message  # the operator learns which file
    return message


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('default = "en"\n[templates.en]\nlanguage = "en_US"\n', ["templates.en.name", "required"]),
        ('default = "en"\n[templates.en]\nname = "Repurchase Coupon"\nlanguage = "en_US"\n',
         ["templates.en.name", "'Repurchase Coupon'", "lowercase"]),
        ('default = "en"\n[templates.en]\nname = "' + "a" * 513 + '"\nlanguage = "en_US"\n',
         ["templates.en.name", "512"]),
        ('default = "en"\n[templates.en]\nname = "coupon"\n', ["templates.en.language", "required"]),
        ('default = "en"\n[templates.en]\nname = "coupon"\nlanguage = "English"\n',
         ["templates.en.language", "'English'"]),
        ('default = "id"\n[templates.id]\nname = "kupon"\nlanguage = "id"\nbody = ["customer_name", "price"]\n',
         ["templates.id.body[1]", "'price'", "offer"]),
        ('default = "id"\n[templates.id]\nname = "kupon"\nlanguage = "id"\nbody = "offer"\n',
         ["templates.id.body", "list"]),
        ('default = "id"\n[templates.id]\nname = "kupon"\nlangauge = "id"\n',
         ["templates.id.langauge", "unknown field"]),
        ('default = "id"\n[templates.id]\nname = "kupon"\nlanguage = "id"\nbutton_index = 10\n',
         ["templates.id.button_index", "0 to 9"]),
        ('default = "id"\n[templates.id]\nname = "kupon"\nlanguage = "id"\nbutton_index = true\n',
         ["templates.id.button_index"]),
        ('[templates.id]\nname = "kupon"\nlanguage = "id"\n', ["default", "required"]),
        ('default = "th"\n[templates.id]\nname = "kupon"\nlanguage = "id"\n',
         ["default", "'th'", "[templates.th]"]),
        ('default = "ja"\n[templates.ja]\nname = "kuupon"\nlanguage = "ja"\n',
         ["templates.ja", "'ja'", "languages: en"]),
        ('default = "id"\n', ["templates", "required"]),
        ('default = "id"\ntemplates = "kupon"\n', ["templates", "required"]),
        ('default = "id"\n[templates]\nid = "kupon"\n', ["templates.id", "table"]),
        ('defualt = "id"\n[templates.id]\nname = "kupon"\nlanguage = "id"\n', ["defualt", "unknown key"]),
        ('default = "id"\n[templates.id\n', ["not valid TOML"]),
    ],
)
def test_a_broken_file_is_refused_naming_the_file_the_language_and_the_field(text, names, tmp_path):
    message = _problem(text, tmp_path)
    for name in names:
        assert name in message, message


def test_a_missing_or_binary_file_is_refused_naming_it(tmp_path):
    with pytest.raises(WhatsAppTemplatesError, match="nowhere.toml: cannot be read"):
        load_templates(tmp_path / "nowhere.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"default = \"\xff\"\n")
    with pytest.raises(WhatsAppTemplatesError, match="binary.toml: not UTF-8"):
        load_templates(binary)


def test_parse_templates_names_its_source():
    with pytest.raises(WhatsAppTemplatesError, match=r"^ENCORE_WHATSAPP_TEMPLATES: templates: required"):
        parse_templates({"default": "en"})


# ---------------------------------------------------------------------- the parameters


def test_an_indonesian_customer_gets_the_id_template_filled_as_the_text_says_it(templates):
    ctx = context()
    message = template_message(templates.for_language(ctx.language), ctx)
    text = render_message(ctx, "whatsapp").text
    assert message.name == "kupon_belanja_lagi" and message.language == "id"
    name, product, offer, expires = message.body
    assert name == "Sari" and product == "Serum Wajah"
    # The same sentence and the same local formats as the localized chat message.
    assert offer == "Dapatkan isi ulang Serum Wajah seharga Rp132.300." and offer in text
    assert expires in text and "Desember 2026" in expires
    # The button copies the code without dashes, and that copy still redeems.
    assert message.coupon_code == "K7QXM3PAHZ2WRTY"
    assert normalize_code(message.coupon_code) == CODE


def test_a_customer_without_a_name_is_greeted_with_the_languages_fallback_word(templates):
    # Meta refuses an empty parameter, so {{1}} never goes out blank.
    message = template_message(templates.for_language("id"), context(name=None))
    assert message.body[0] == "Kak"
    message = template_message(templates.for_language("en"), context("en-US", "en", name="   "))
    assert message.body[0] == "friend"


def test_the_default_template_is_filled_in_its_own_language_not_the_customers(templates):
    # A Thai customer gets the English template: Thai words inside English text
    # would read as a broken message.
    ctx = context("th-TH", "th", offer=Offer(type="percent_off", sku="MASK", product_name="Clay Mask",
                                             currency="THB", percent=Decimal(30)))
    message = template_message(templates.for_language(ctx.language), ctx)
    assert message.name == "repurchase_coupon" and message.language == "en_US"
    assert message.body[2] == "Get 30% off your next Clay Mask."
    assert "December" in message.body[3]


def test_the_files_body_order_decides_which_value_fills_which_placeholder():
    templates = parse_templates({"default": "en", "templates": {"en": {
        "name": "coupon", "language": "en", "body": ["expires", "code", "customer_name", "shop"],
        "button_index": 1}}})
    message = template_message(templates.for_language("en"), context("en-US", "en"))
    assert message.body[1:] == ("K7QXM-3PAHZ-2WRTY", "Sari", "Encore")
    assert "2026" in message.body[0]
    assert message.button_index == 1


def test_names_that_would_break_a_parameter_are_cleaned_and_shortened(templates):
    ctx = context(name="Sari\n\tDewi      Lestari", product="Serum\r\n" + "x" * 400)
    message = template_message(templates.for_language("id"), ctx)
    name, product, offer, _ = message.body
    assert name == "Sari Dewi Lestari"
    for value in message.body:
        assert "\n" not in value and "\t" not in value and "     " not in value
    assert len(product) == MAX_PARAMETER and product.endswith("…")
    assert len(offer) <= MAX_PARAMETER


def test_clean_parameter_keeps_local_spacing_and_cuts_long_values():
    assert clean_parameter("R$\xa014,00") == "R$\xa014,00"  # babel's non-breaking space stays
    assert clean_parameter("a\u2028b\x85c") == "a b c"
    assert clean_parameter("a    b") == "a b"
    assert clean_parameter("x" * 100, MAX_NAME_PARAMETER) == "x" * (MAX_NAME_PARAMETER - 1) + "…"


def test_copy_code_is_the_code_without_dashes_and_never_more_than_15():
    assert copy_code("ABCDE-FGHJK-MNPQR") == "ABCDEFGHJKMNPQR"
    for bad in ("ABCDE-FGHJK-MNPQR-S", "ABC!D", "", "ÀBCDE"):
        with pytest.raises(ValueError):
            copy_code(bad)


# -------------------------------------------------------------------- the request body


def test_the_request_body_is_the_template_message_meta_documents():
    message = WhatsAppTemplateMessage(name="kupon_belanja_lagi", language="id", body=("Sari", "Serum"),
                                      coupon_code="ABCDEFGHJKMNPQR", button_index=0)
    assert cloud_api_request(message, "+62 812-3456-7890") == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+6281234567890",
        "type": "template",
        "template": {
            "name": "kupon_belanja_lagi",
            "language": {"code": "id"},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "Sari"},
                                                {"type": "text", "text": "Serum"}]},
                {"type": "button", "sub_type": "copy_code", "index": 0,
                 "parameters": [{"type": "coupon_code", "coupon_code": "ABCDEFGHJKMNPQR"}]},
            ],
        },
    }


def test_a_template_without_body_parameters_sends_only_its_button():
    message = WhatsAppTemplateMessage(name="coupon", language="en", body=(), coupon_code="ABC")
    components = cloud_api_request(message, "+6281234567890")["template"]["components"]
    assert [c["type"] for c in components] == ["button"]


# ---------------------------------------------------------------------------- +1 numbers


@pytest.mark.parametrize(
    ("number", "blocked"),
    [
        ("+15551234567", True),
        ("+1 (555) 123-4567", True),
        ("+14165550123", True),  # Canada shares +1 and SPEC keeps it off too
        ("+12425550123", True),  # so do the Caribbean members of the plan
        ("+6281234567890", False),
        ("+447700900123", False),
        ("+5511987654321", False),
        ("15551234567", False),  # not E.164: the event validation refuses it before
        ("", False),
        (None, False),
    ],
)
def test_plus_one_numbers_are_never_sent_a_whatsapp_coupon(number, blocked):
    assert is_us_blocked(number) is blocked
