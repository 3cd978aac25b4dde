"""ENCORE_WHATSAPP_TEMPLATES and ENCORE_WHATSAPP_API_URL (SPEC rule 16): read once at start,
and a broken templates file stops every command with the file and the field at fault."""

from __future__ import annotations

import subprocess
import sys

import pytest

from config.settings import DEFAULT_WHATSAPP_API_URL, SettingsError, load_settings
from coupons.whatsapp import WhatsAppTemplatesError, passed_over

GOOD = 'default = "en"\n[templates.en]\nname = "repurchase_coupon"\nlanguage = "en_US"\n'


def test_without_the_settings_there_are_no_templates_and_metas_own_api(tmp_path):
    settings = load_settings({"ENCORE_DATA_DIR": str(tmp_path)})
    assert (settings.whatsapp_templates, settings.whatsapp_api_url) == (None, DEFAULT_WHATSAPP_API_URL)


def test_the_templates_file_and_a_stand_in_are_read(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(GOOD)
    settings = load_settings({"ENCORE_DATA_DIR": str(tmp_path), "ENCORE_WHATSAPP_TEMPLATES": str(path),
                              "ENCORE_WHATSAPP_API_URL": "http://127.0.0.1:9200/"})
    assert settings.whatsapp_templates.for_language("id").name == "repurchase_coupon"
    assert settings.whatsapp_api_url == "http://127.0.0.1:9200"


@pytest.mark.parametrize(("text", "field"), [
    ('default = "en"\n[templates.en]\nlanguage = "en_US"\n', "templates.en.name: required"),
    ('default = "id"\n[templates.en]\nname = "x"\nlanguage = "en_US"\n', "default: 'id' has no [templates.id]"),
    ('default = "en"\n[templates.en]\nname = "Bad Name"\nlanguage = "en_US"\n', "templates.en.name: 'Bad Name'"),
    ('default = "en"\n[templates.en]\nname = "x"\nlanguage = "en_US"\nbody = ["price"]\n', "templates.en.body[0]"),
    ("default = \n", "not valid TOML"),
])
def test_a_broken_templates_file_is_refused_naming_the_file_and_the_field(tmp_path, text, field):
    path = tmp_path / "whatsapp.toml"
    path.write_text(text)
    with pytest.raises(WhatsAppTemplatesError) as refused:
        load_settings({"ENCORE_DATA_DIR": str(tmp_path), "ENCORE_WHATSAPP_TEMPLATES": str(path)})
    assert str(refused.value).startswith(f"ENCORE_WHATSAPP_TEMPLATES: {path}: ")
    assert field in str(refused.value)


def test_a_missing_templates_file_is_refused(tmp_path):
    with pytest.raises(WhatsAppTemplatesError, match="cannot be read"):
        load_settings({"ENCORE_DATA_DIR": str(tmp_path), "ENCORE_WHATSAPP_TEMPLATES": str(tmp_path / "nope.toml")})


def test_a_broken_templates_file_stops_a_command_with_one_line(tmp_path):
    path = tmp_path / "whatsapp.toml"
    path.write_text('default = "en"\n[templates.en]\nname = "x"\n')
    env = {"PATH": "/usr/bin:/bin", "ENCORE_DATA_DIR": str(tmp_path), "ENCORE_WHATSAPP_TEMPLATES": str(path)}
    done = subprocess.run([sys.executable, "-m", "workers.cli", "deliveries"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == f"encore: ENCORE_WHATSAPP_TEMPLATES: {path}: templates.en.language: required: " \
                                  "the template's language code at Meta, such as en_US or id"


@pytest.mark.parametrize("url", ["graph.facebook.com", "ftp://x", "https://"])
def test_an_api_url_that_is_not_http_is_refused(tmp_path, url):
    with pytest.raises(SettingsError, match="ENCORE_WHATSAPP_API_URL"):
        load_settings({"ENCORE_DATA_DIR": str(tmp_path), "ENCORE_WHATSAPP_API_URL": url})


@pytest.mark.parametrize(("number", "cloud_api", "templates", "reason"), [
    ("+14155550123", False, False, "whatsapp_us_blocked"),  # a gateway of the seller's own: still no +1
    ("+1 (415) 555-0123", True, True, "whatsapp_us_blocked"),
    ("+6281234567890", True, False, "whatsapp_no_template"),
    ("+6281234567890", True, True, None),
    ("+6281234567890", False, False, None),  # a gateway sends the text
])
def test_what_is_passed_over_before_any_send(number, cloud_api, templates, reason):
    skip = passed_over(number, needs_template=cloud_api, has_templates=templates)
    assert (skip[0] if skip else None) == reason


# -- encore check ---------------------------------------------------------------------------------------------------

CLOUD_API = "whatsapp://EAAJBtoken@106540352242922/{whatsapp}"


def whatsapp_check(tmp_path, **env: str):
    from services.check import _whatsapp_templates

    return list(_whatsapp_templates(load_settings({"ENCORE_DATA_DIR": str(tmp_path), **env})))


def test_check_names_the_languages_of_whatsapp_markets_without_a_template(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(GOOD + '[templates.id]\nname = "kupon_belanja_lagi"\nlanguage = "id"\n')
    [line] = whatsapp_check(tmp_path, ENCORE_CHANNEL_WHATSAPP=CLOUD_API, ENCORE_WHATSAPP_TEMPLATES=str(path))
    # the shipped markets with WhatsApp speak en, id, th, vi (south-east Asia), es, pt (Latin America), ar
    assert (line.ok, line.warning) == (True, True)
    assert "no template for ar, es, pt, th, vi " in line.detail


def test_check_is_content_when_every_language_has_a_template(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(GOOD + "".join(f'[templates.{lang}]\nname = "coupon_{lang}"\nlanguage = "{lang}"\n'
                                   for lang in ("id", "th", "vi", "es", "pt", "ar")))
    [line] = whatsapp_check(tmp_path, ENCORE_CHANNEL_WHATSAPP=CLOUD_API, ENCORE_WHATSAPP_TEMPLATES=str(path))
    assert (line.ok, line.warning) == (True, False)
    assert line.detail.endswith("every language of the WhatsApp markets has one")


def test_check_fails_the_cloud_api_without_a_templates_file(tmp_path):
    [line] = whatsapp_check(tmp_path, ENCORE_CHANNEL_WHATSAPP=CLOUD_API)
    assert not line.ok and "ENCORE_WHATSAPP_TEMPLATES is not set" in line.detail


def test_check_needs_no_templates_for_a_gateway_of_the_sellers_own(tmp_path):
    assert whatsapp_check(tmp_path, ENCORE_CHANNEL_WHATSAPP="json://127.0.0.1:9100/wa/{whatsapp}") == []
