"""`encore preview`'s samples and rendering: every market's languages, offers in the
market's own currency and formats, the WhatsApp template with its parameters, and the
[TEST] mark of a test message. No database and no server: the preview opens neither."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from config.settings import load_settings
from coupons.markets import load_markets
from coupons.preview import PreviewSelectionError, sample_price, samples
from services.bootstrap import bootstrap
from services.preview import PreviewError, channels_for, marked, preview_messages

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
TEMPLATES = '''default = "en"
[templates.en]
name = "repurchase_coupon"
language = "en_US"
[templates.pt]
name = "cupom_recompra"
language = "pt_BR"
'''


def _runtime(tmp_path, **env):
    settings = load_settings({"ENCORE_DATA_DIR": str(tmp_path), **env})
    return bootstrap(settings, clock=lambda: NOW)


def test_every_market_is_sampled_in_each_language_its_customers_read():
    found = {(s.market, s.language) for s in samples(load_markets(), NOW)}
    assert {("southeast_asia", "id"), ("southeast_asia", "th"), ("southeast_asia", "vi"), ("latin_america", "pt"),
            ("latin_america", "es"), ("middle_east", "ar"), ("north_america", "en")} <= found


def test_sample_prices_look_like_the_markets_currency():
    assert sample_price("USD") == Decimal("24.00")
    assert sample_price("IDR") == Decimal("380000")
    assert sample_price("JPY") == Decimal("3600")


def test_offers_follow_rule_3_in_the_markets_currency_and_depth():
    by_type = {s.offer.type: s.offer for s in samples(load_markets(), NOW, market="latin_america", locale="pt-BR")}
    assert set(by_type) == {"percent_off", "second_half_price", "refill"}
    assert by_type["percent_off"].currency == "BRL" and by_type["percent_off"].percent == Decimal("20")
    assert by_type["refill"].price == Decimal("84.00")  # 0.70 x BRL 120.00


@pytest.mark.parametrize("options, field", [({"market": "atlantis"}, "--market"), ({"offer_type": "bogof"}, "--offer"),
                                            ({"locale": "xx-YY"}, "--locale")])
def test_an_option_that_selects_nothing_is_named(options, field):
    with pytest.raises(PreviewSelectionError, match=field):
        samples(load_markets(), NOW, **options)


def test_whatsapp_shows_the_approved_template_with_its_parameters(tmp_path):
    (tmp_path / "templates.toml").write_text(TEMPLATES)
    runtime = _runtime(tmp_path, ENCORE_WHATSAPP_TEMPLATES=str(tmp_path / "templates.toml"))
    [preview] = preview_messages(runtime, market="latin_america", locale="pt-BR", offer_type="percent_off",
                                 channel="whatsapp")
    block = preview.text_block()
    assert "WhatsApp template cupom_recompra (pt_BR):" in block
    assert "{{1}} = Ana" in block and "R$" in block
    assert f"copy-code button = {preview.message.whatsapp_template.coupon_code}" in block


def test_a_channel_no_selected_market_uses_is_named(tmp_path):
    with pytest.raises(PreviewError, match="--channel"):
        preview_messages(_runtime(tmp_path), market="north_america", channel="line")


def test_a_test_message_is_marked_at_the_start_of_its_subject_or_first_line(tmp_path):
    previews = preview_messages(_runtime(tmp_path), market="north_america", offer_type="refill")
    email = next(p for p in previews if p.channel == "email")
    sms = next(p for p in previews if p.channel == "sms")
    assert marked(email.message).subject.startswith("[TEST] ") and marked(email.message).text == email.message.text
    assert marked(sms.message).text.startswith("[TEST] ")
    assert channels_for("me@example.com") == ("email",) and channels_for("+15551234567") == ("sms", "whatsapp")


def test_a_locale_picks_the_markets_country_that_speaks_it():
    spanish = samples(load_markets(), NOW, market="latin_america", locale="es", offer_type="percent_off")[0]
    assert (spanish.country, spanish.locale, spanish.offer.currency) == ("MX", "es_MX", "MXN")
    brazil = samples(load_markets(), NOW, market="latin_america", locale="pt-BR", offer_type="percent_off")[0]
    assert (brazil.country, brazil.offer.currency) == ("BR", "BRL")


def test_an_unknown_shop_is_named(tmp_path):
    with pytest.raises(PreviewError, match="--shop: unknown shop 'nope'"):
        preview_messages(_runtime(tmp_path), shop="nope")


def test_a_test_whatsapp_template_is_marked_in_its_first_parameter(tmp_path):
    """An approved template's copy cannot change, so a test sent through the Cloud API
    carried no [TEST] at all: the mark goes at the start of {{1}}."""
    (tmp_path / "templates.toml").write_text(TEMPLATES)
    runtime = _runtime(tmp_path, ENCORE_WHATSAPP_TEMPLATES=str(tmp_path / "templates.toml"))
    [preview] = preview_messages(runtime, market="latin_america", locale="pt-BR", offer_type="percent_off",
                                 channel="whatsapp")
    template = marked(preview.message).whatsapp_template
    assert template.body[0] == "[TEST] " + preview.message.whatsapp_template.body[0]
    assert template.body[1:] == preview.message.whatsapp_template.body[1:]
