"""SPEC section 7: the shops file, and the errors that name the file, the shop and the field."""

from __future__ import annotations

import pytest

from coupons.shops import (
    DEFAULT_SHOP,
    SHOPIFY_API_VERSION,
    Shop,
    ShopsFileError,
    UnknownShopError,
    default_shops,
    load_shops,
    missing_secrets,
    parse_shops,
)
from tests.support import SPEC_SHOPS_FILE

FILE = "shops.toml"


def parse(text: str = SPEC_SHOPS_FILE):
    return parse_shops(text, FILE)


def refused(text: str) -> str:
    with pytest.raises(ShopsFileError) as info:
        parse(text)
    return str(info.value)


# --- what a good file gives ---------------------------------------------------------


def test_the_spec_example_parses_as_written():
    shops = parse()

    assert set(shops.by_name) == {"glow-us", "glow-wc"}
    assert shops.get("glow-us") == Shop(
        name="glow-us", platform="shopify", domain="glow-us.myshopify.com",
        api_url="https://glow-us.myshopify.com/admin/api/2025-07/graphql.json",
        token_env="GLOW_US_SHOPIFY_TOKEN", webhook_secret_env="GLOW_US_SHOPIFY_SECRET", brand="Glow")
    assert shops.get("glow-wc") == Shop(
        name="glow-wc", platform="woocommerce", domain="https://glow.example",
        api_url="https://glow.example/wp-json/wc/v3/", key_env="GLOW_WC_KEY", secret_env="GLOW_WC_SECRET")


def test_a_shopify_shop_without_api_url_gets_the_admin_graphql_endpoint_of_the_pinned_version():
    shop = parse(SPEC_SHOPS_FILE.replace('api_url = "https://glow-us.myshopify.com/admin/api/2025-07/graphql.json"',
                                   "")).get("glow-us")

    assert shop.api_url == f"https://glow-us.myshopify.com/admin/api/{SHOPIFY_API_VERSION}/graphql.json"


def test_a_woocommerce_site_in_a_folder_and_a_trailing_slash_give_one_rest_base():
    shop = parse(SPEC_SHOPS_FILE.replace('domain = "https://glow.example"', 'domain = "https://glow.example/shop/"')
                 ).get("glow-wc")

    assert shop.domain == "https://glow.example/shop"
    assert shop.api_url == "https://glow.example/shop/wp-json/wc/v3/"


def test_an_api_url_pointing_at_a_stand_in_is_kept():
    text = SPEC_SHOPS_FILE.replace('secret_env = "GLOW_WC_SECRET"',
                             'secret_env = "GLOW_WC_SECRET"\napi_url = "http://127.0.0.1:9200/wp-json/wc/v3"')

    assert parse(text).get("glow-wc").api_url == "http://127.0.0.1:9200/wp-json/wc/v3/"


def test_without_a_file_there_is_one_shop_default_on_platform_none_with_encores_signature():
    for shops in (default_shops(), load_shops(None), load_shops("")):
        assert list(shops.by_name) == [DEFAULT_SHOP]
        assert shops.get(DEFAULT_SHOP) == Shop(name="default", platform="none")
        assert shops.get(DEFAULT_SHOP).brand is None
        assert missing_secrets(shops.get(DEFAULT_SHOP), {}) == []


def test_a_file_may_name_a_shop_default_to_keep_the_data_of_an_install_already_in_use():
    shops = parse('[shops.default]\nplatform = "none"\nbrand = "Glow"\n' + SPEC_SHOPS_FILE)

    assert shops.get("default").brand == "Glow"
    assert shops.get("default").platform == "none"


def test_load_shops_reads_the_file_and_names_it_in_errors(tmp_path):
    path = tmp_path / "shops.toml"
    path.write_text(SPEC_SHOPS_FILE, encoding="utf-8")
    assert set(load_shops(str(path)).by_name) == {"glow-us", "glow-wc"}

    path.write_text(SPEC_SHOPS_FILE.replace('token_env = "GLOW_US_SHOPIFY_TOKEN"', ""), encoding="utf-8")
    with pytest.raises(ShopsFileError) as info:
        load_shops(str(path))
    assert str(info.value) == f'{path}: shops.glow-us.token_env: required for platform "shopify"'


def test_a_missing_or_unreadable_file_is_named(tmp_path):
    for path in (tmp_path / "nowhere.toml", tmp_path):
        with pytest.raises(ShopsFileError) as info:
            load_shops(str(path))
        assert str(info.value).startswith(f"{path}: cannot be read"), str(info.value)

    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'[shops.caf\xe9]\nplatform = "none"\n')
    with pytest.raises(ShopsFileError) as info:
        load_shops(str(bad))
    assert str(info.value).startswith(f"{bad}: cannot be read"), str(info.value)


# --- every error names the file, the shop and the field ---------------------------------

SHOPIFY_TOKEN = "shpat_0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('token_env = "GLOW_US_SHOPIFY_TOKEN"', "",
         'shops.toml: shops.glow-us.token_env: required for platform "shopify"'),
        ('webhook_secret_env = "GLOW_US_SHOPIFY_SECRET"', "",
         'shops.toml: shops.glow-us.webhook_secret_env: required for platform "shopify"'),
        ('domain = "glow-us.myshopify.com"', "", 'shops.toml: shops.glow-us.domain: required for platform "shopify"'),
        ('key_env = "GLOW_WC_KEY"', "", 'shops.toml: shops.glow-wc.key_env: required for platform "woocommerce"'),
        ('secret_env = "GLOW_WC_SECRET"', "",
         'shops.toml: shops.glow-wc.secret_env: required for platform "woocommerce"'),
        ('domain = "https://glow.example"', "", 'shops.toml: shops.glow-wc.domain: required for platform "woocommerce"'),
        ('platform = "woocommerce"', "", "shops.toml: shops.glow-wc.platform: required"),
        ('platform = "woocommerce"', 'platform = "magento"', "shops.toml: shops.glow-wc.platform: must be"),
        ('platform = "woocommerce"', 'platform = "WooCommerce"', "shops.toml: shops.glow-wc.platform: must be"),
        ('brand = "Glow"', 'brnad = "Glow"', "shops.toml: shops.glow-us.brnad: unknown key"),
        ('brand = "Glow"', 'key_env = "GLOW_US_KEY"', "shops.toml: shops.glow-us.key_env: not used with platform"),
        ('brand = "Glow"', 'brand = ""', "shops.toml: shops.glow-us.brand: must be a non-empty string"),
        ('brand = "Glow"', 'brand = "Glow\\nSubject: spam"', "shops.toml: shops.glow-us.brand: must be at most"),
        ('brand = "Glow"', f'brand = "{"G" * 101}"', "shops.toml: shops.glow-us.brand: must be at most"),
        ('brand = "Glow"', "brand = 7", "shops.toml: shops.glow-us.brand: must be a non-empty string"),
        ('domain = "glow-us.myshopify.com"', 'domain = "https://glow-us.myshopify.com"',
         "shops.toml: shops.glow-us.domain: must be the shop's myshopify domain"),
        ('domain = "glow-us.myshopify.com"', 'domain = "glow.com"',
         "shops.toml: shops.glow-us.domain: must be the shop's myshopify domain"),
        ('domain = "glow-us.myshopify.com"', 'domain = "glow_us.myshopify.com"',
         "shops.toml: shops.glow-us.domain: must be the shop's myshopify domain"),
        ('domain = "https://glow.example"', 'domain = "glow.example"',
         "shops.toml: shops.glow-wc.domain: must be an http(s) URL"),
        ('domain = "https://glow.example"', 'domain = "https://glow.example/?page=1"',
         "shops.toml: shops.glow-wc.domain: must be the site's address"),
        ('api_url = "https://glow-us.myshopify.com/admin/api/2025-07/graphql.json"', 'api_url = "glow-us/graphql"',
         "shops.toml: shops.glow-us.api_url: must be an http(s) URL"),
        ('token_env = "GLOW_US_SHOPIFY_TOKEN"', 'token_env = "glow us token"',
         "shops.toml: shops.glow-us.token_env: must be the NAME of an environment variable"),
        ('[shops.glow-wc]', '[shops.Glow-WC]', "shops.toml: shops.Glow-WC: a shop's name must be"),
        ('[shops.glow-wc]', '[shops.-glow]', "shops.toml: shops.-glow: a shop's name must be"),
        ('[shops.glow-wc]', f'[shops.{"g" * 65}]', f"shops.toml: shops.{'g' * 65}: a shop's name must be"),
        ('[shops.glow-wc]', '[shops."glow wc"]', "shops.toml: shops.glow wc: a shop's name must be"),
        ('[shops.glow-wc]\n', "[shops.glow-wc]\n[extra]\n", "shops.toml: extra: unknown key"),
        ('[shops.glow-us]', '[shop.glow-us]', "shops.toml: shop: unknown key"),
        ('platform = "shopify"  ', 'platform = shopify  ', "shops.toml: not valid TOML"),
    ],
)
def test_a_broken_file_is_refused_naming_file_shop_and_field(old, new, message):
    assert old in SPEC_SHOPS_FILE
    assert refused(SPEC_SHOPS_FILE.replace(old, new, 1)).startswith(message)


@pytest.mark.parametrize(
    ("shop", "line", "names"),
    [
        ("glow-us", f'token = "{SHOPIFY_TOKEN}"', ("shops.glow-us.token:", "token_env")),
        ("glow-us", 'webhook_secret = "whsec-abcdef"', ("shops.glow-us.webhook_secret:", "webhook_secret_env")),
        ("glow-us", f'access_token = "{SHOPIFY_TOKEN}"', ("shops.glow-us.access_token:", "token_env")),
        ("glow-wc", 'key = "ck_0123456789abcdef0123456789abcdef01234567"', ("shops.glow-wc.key:", "key_env")),
        ("glow-wc", 'secret = "cs_0123456789abcdef0123456789abcdef01234567"', ("shops.glow-wc.secret:", "secret_env")),
        ("glow-wc", 'consumer_secret = "cs_0123456789abcdef"', ("shops.glow-wc.consumer_secret:", "secret_env")),
    ],
)
def test_a_secret_written_in_the_file_is_refused_pointing_at_the_env_form_and_not_repeated(shop, line, names):
    text = SPEC_SHOPS_FILE.replace(f"[shops.{shop}]\n", f"[shops.{shop}]\n{line}\n")

    message = refused(text)

    assert message.startswith(f"shops.toml: {names[0]} secrets are never written in this file"), message
    assert names[1] in message
    assert line.split('"')[1] not in message


@pytest.mark.parametrize("value", [SHOPIFY_TOKEN, "SHPAT_0123456789ABCDEF", "ck_0123456789abcdef"])
def test_a_secret_pasted_where_the_variable_name_belongs_is_refused_and_not_repeated(value):
    field = "key_env" if value.startswith("ck_") else "token_env"
    old = 'key_env = "GLOW_WC_KEY"' if field == "key_env" else 'token_env = "GLOW_US_SHOPIFY_TOKEN"'

    message = refused(SPEC_SHOPS_FILE.replace(old, f'{field} = "{value}"'))

    assert "looks like a secret itself" in message and field in message
    assert value not in message


def test_credentials_in_a_url_are_refused_and_not_repeated():
    message = refused(SPEC_SHOPS_FILE.replace('domain = "https://glow.example"',
                                        'domain = "https://ck_abc:cs_def@glow.example"'))

    assert message.startswith("shops.toml: shops.glow-wc.domain: must not hold credentials"), message
    assert "cs_def" not in message


def test_platform_none_takes_only_a_brand():
    assert parse('[shops.plain]\nplatform = "none"\n').get("plain") == Shop(name="plain", platform="none")
    message = refused('[shops.plain]\nplatform = "none"\ndomain = "plain.myshopify.com"\n')

    assert message.startswith("shops.toml: shops.plain.domain: not used with platform 'none'"), message


def test_two_shopify_shops_with_one_domain_are_refused_whatever_the_case():
    text = SPEC_SHOPS_FILE + '\n[shops.glow-copy]\nplatform = "shopify"\ndomain = "GLOW-US.myshopify.com"\n' \
                       'token_env = "COPY_TOKEN"\nwebhook_secret_env = "COPY_SECRET"\n'

    message = refused(text)

    assert message.startswith("shops.toml: shops.glow-copy.domain: glow-us.myshopify.com is already the domain "
                              "of shop glow-us"), message


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "shops = {}\n", 'shops = "glow"\n'])
def test_a_file_without_shops_is_refused(text):
    assert refused(text).startswith("shops.toml: shops: required: at least one [shops.<name>] table")


def test_a_shop_that_is_not_a_table_is_refused():
    assert refused('shops.glow = "shopify"\n').startswith("shops.toml: shops.glow: must be a table")


# --- lookups -------------------------------------------------------------------------------


def test_an_unknown_shop_is_refused_naming_the_shops_there_are():
    shops = parse()

    with pytest.raises(UnknownShopError) as info:
        shops.get("glow-eu")
    assert str(info.value) == "unknown shop 'glow-eu': shops.toml defines glow-us, glow-wc"

    with pytest.raises(UnknownShopError) as info:
        shops.get(DEFAULT_SHOP)
    assert "event without `shop`" in str(info.value)

    with pytest.raises(UnknownShopError) as info:
        default_shops().get("glow-us")
    assert "without ENCORE_SHOPS_FILE the only shop is default" in str(info.value)


@pytest.mark.parametrize("header", ["glow-us.myshopify.com", "GLOW-US.MyShopify.com", " glow-us.myshopify.com. "])
def test_the_webhook_finds_its_shop_by_domain_in_any_case(header):
    assert parse().for_shopify_domain(header).name == "glow-us"


@pytest.mark.parametrize("header", [None, "", "glow-eu.myshopify.com", "glow.example", "https://glow.example"])
def test_a_domain_of_no_shopify_shop_finds_none(header):
    assert parse().for_shopify_domain(header) is None


def test_missing_secrets_names_the_unset_and_blank_variables_only():
    shops = parse()
    environ = {"GLOW_US_SHOPIFY_TOKEN": "shpat_x", "GLOW_US_SHOPIFY_SECRET": "  ", "GLOW_WC_KEY": "ck_x"}

    assert missing_secrets(shops.get("glow-us"), environ) == ["GLOW_US_SHOPIFY_SECRET"]
    assert missing_secrets(shops.get("glow-wc"), environ) == ["GLOW_WC_SECRET"]
    assert missing_secrets(shops.get("glow-wc"), {**environ, "GLOW_WC_SECRET": "cs_x"}) == []


def test_keys_of_the_default_shop_are_the_ids_so_an_old_database_keeps_its_rows():
    from coupons.shops import raw_id, shop_key

    assert shop_key("default", "cust-1") == "cust-1"
    assert raw_id("default", "cust-1") == "cust-1"


def test_one_id_in_two_shops_is_two_keys_and_each_reads_back():
    from coupons.shops import raw_id, shop_key

    keys = {shop_key(shop, "cust-1") for shop in ("default", "glow-us", "glow-eu")}
    assert len(keys) == 3
    assert raw_id("glow-us", shop_key("glow-us", "cust-1")) == "cust-1"
    # an id that looks like another shop's key is still its own shop's
    assert shop_key("default", "glow-us:cust-1") != shop_key("glow-us", "cust-1")
    with pytest.raises(ValueError):
        raw_id("glow-eu", shop_key("glow-us", "cust-1"))
