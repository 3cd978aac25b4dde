"""SPEC section 7: the shops one install serves, from the file named by ENCORE_SHOPS_FILE.

This module only parses and validates the file; it reads no environment. Secrets are
never in the file, only the names of the variables that hold them: the settings layer
reads those variables, and `missing_secrets` says which of them are unset.

Rules the SPEC leaves open (README, "Rules where the spec is silent"):
- A shop's name is a slug: lowercase letters, digits, `-` and `_`, starting with a
  letter or digit, at most 64 characters (it appears in events, URLs, metric labels).
- A file may define a shop named `default`. Rows stored before shops existed belong to
  `default`, so a seller who adds a file for an install already in use names that shop
  `default` to keep its customers, consent, caps and coupons. Without a `default` in the
  file, an event must name its shop.
- Unknown keys are refused, naming them (a typo must not silently drop a setting); a key
  that would hold a secret (`token`, `secret`, ...) is refused with the `*_env` to use.
- Keys that belong to another platform are refused too (`key_env` on a Shopify shop).
- Two Shopify shops cannot share a domain: the webhook finds its shop by
  `X-Shopify-Shop-Domain`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from .errors import ConfigError, ShopError

Platform = Literal["shopify", "woocommerce", "none"]
PLATFORMS: tuple[Platform, ...] = ("shopify", "woocommerce", "none")
DEFAULT_SHOP = "default"
"""The shop of an install without a shops file, and of every event without `shop`."""
ENCORE_SIGNATURE = "Encore"
"""How the messages of the default shop without a brand are signed (as before shops)."""

SHOPIFY_API_VERSION = "2026-10"
"""The one place the Shopify Admin API version is pinned (a stable version on shopify.dev):
the default `api_url` and `platforms.shopify_api` both use it (SPEC section 7)."""

SHOP_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MYSHOPIFY_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.myshopify\.com")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
SECRET_PREFIXES = ("shpat_", "shpca_", "shppa_", "shpss_", "ck_", "cs_")
"""How Shopify access tokens and shared secrets, and WooCommerce consumer keys and
secrets, begin: a value like this pasted where a variable's name belongs is refused."""
MAX_BRAND = 100

_SECRETS_BY_PLATFORM: dict[Platform, tuple[str, ...]] = {
    "shopify": ("token_env", "webhook_secret_env"),
    "woocommerce": ("key_env", "secret_env"),
    "none": (),
}
_KEYS_BY_PLATFORM: dict[Platform, tuple[str, ...]] = {
    "shopify": ("platform", "domain", "api_url", "token_env", "webhook_secret_env", "brand"),
    "woocommerce": ("platform", "domain", "api_url", "key_env", "secret_env", "brand"),
    "none": ("platform", "brand"),
}
_SECRET_KEYS = {
    "token": "token_env", "access_token": "token_env", "admin_token": "token_env", "api_token": "token_env",
    "webhook_secret": "webhook_secret_env", "shared_secret": "webhook_secret_env",
    "key": "key_env", "consumer_key": "key_env", "api_key": "key_env",
    "secret": "secret_env", "consumer_secret": "secret_env", "api_secret": "secret_env", "password": "secret_env",
}
"""Keys someone might write a secret under → the `*_env` key that names its variable instead."""


class ShopsFileError(ConfigError, ValueError):
    """The shops file is unusable; the message names the file, the shop and the field."""


Fail = Callable[[str, str], ShopsFileError]


class UnknownShopError(ShopError, ValueError):
    """A shop name that the shops file does not define."""


@dataclass(frozen=True)
class Shop:
    """One shop: where its codes are created, and the variables holding its secrets."""

    name: str
    platform: Platform
    domain: str | None = None
    """Shopify: the myshopify domain (lowercase); WooCommerce: the site URL, no trailing slash."""
    api_url: str | None = None
    """Shopify: the GraphQL endpoint; WooCommerce: the REST base, ending with `/`."""
    token_env: str | None = None
    webhook_secret_env: str | None = None
    key_env: str | None = None
    secret_env: str | None = None
    brand: str | None = None
    """The shop's name in its messages; None signs them with the shop's name (`signature`)."""

    @property
    def signature(self) -> str:
        """The name its messages and pages are signed with: its brand, else its name; the
        `default` shop without a brand keeps Encore's own ("Encore", as before shops)."""
        return self.brand or (ENCORE_SIGNATURE if self.name == DEFAULT_SHOP else self.name)

    @property
    def secret_variables(self) -> tuple[str, ...]:
        """The names of the environment variables this shop's secrets are read from."""
        return tuple(getattr(self, key) for key in _SECRETS_BY_PLATFORM[self.platform])


@dataclass(frozen=True)
class Shops:
    by_name: Mapping[str, Shop]
    source: str | None = None
    """The file they came from; None for the built-in single shop."""

    def get(self, name: str) -> Shop:
        """The shop called `name`; UnknownShopError says which names exist."""
        shop = self.by_name.get(name)
        if shop is None:
            if self.source is None:
                raise UnknownShopError(f"unknown shop {name!r}: without ENCORE_SHOPS_FILE the only shop is "
                                       f"{DEFAULT_SHOP}")
            hint = (" (an event without `shop` belongs to shop default: name its shop, or define one called "
                    "default)" if name == DEFAULT_SHOP else "")
            raise UnknownShopError(f"unknown shop {name!r}: {self.source} defines "
                                   f"{', '.join(sorted(self.by_name))}{hint}")
        return shop

    def signature(self, name: str) -> str:
        """How the messages of shop `name` are signed (`Shop.signature`); a shop no longer
        in the file (its rows remain) is signed with its name."""
        shop = self.by_name.get(name)
        if shop is not None:
            return shop.signature
        return ENCORE_SIGNATURE if name == DEFAULT_SHOP else name

    def for_shopify_domain(self, domain: str | None) -> Shop | None:
        """The Shopify shop whose myshopify domain is `domain` (as in X-Shopify-Shop-Domain:
        any case, surrounding blanks and a trailing dot ignored), or None."""
        wanted = normalized_domain(domain)
        return next((shop for shop in self.by_name.values()
                     if shop.platform == "shopify" and shop.domain == wanted), None)


KEY_SEPARATOR = "\x1f"
"""Between a shop's name and an id in a stored key. Event validation refuses control
characters in ids, so no id holds it and no two (shop, id) pairs share a key."""


def shop_key(shop: str, raw_id: str) -> str:
    """The stored key of an event, customer, order or stream id of `shop`: ids are scoped
    to their shop (SPEC section 7), so the same customer id in two shops is two customers.
    The default shop's keys are the ids themselves: a database from before shops keeps
    every key it had."""
    return raw_id if shop == DEFAULT_SHOP else f"{shop}{KEY_SEPARATOR}{raw_id}"


def raw_id(shop: str, key: str) -> str:
    """The id as the shop sent it, from a stored key of `shop` (`shop_key` undone)."""
    if shop == DEFAULT_SHOP:
        return key
    prefix = f"{shop}{KEY_SEPARATOR}"
    if not key.startswith(prefix):
        raise ValueError(f"{key!r} is not a key of shop {shop!r}")
    return key[len(prefix):]


def shop_of_key(key: str) -> str:
    """The shop of a stored key (`shop_key`): ids hold no control character, so a key
    with the separator is another shop's, and one without is the default shop's."""
    shop, separator, _ = key.partition(KEY_SEPARATOR)
    return shop if separator else DEFAULT_SHOP


def normalized_domain(domain: str | None) -> str:
    return (domain or "").strip().lower().rstrip(".")


def default_shops() -> Shops:
    """Without ENCORE_SHOPS_FILE: one shop, `default`, platform `none`, Encore's signature."""
    return Shops({DEFAULT_SHOP: Shop(name=DEFAULT_SHOP, platform="none")})


def missing_secrets(shop: Shop, environ: Mapping[str, str]) -> list[str]:
    """The variables `shop` names for its secrets that are unset or blank in `environ`
    (for `encore check` and start-up; the values themselves are never returned)."""
    return [name for name in shop.secret_variables if not (environ.get(name) or "").strip()]


def load_shops(path: str | None) -> Shops:
    """The shops of the file at `path` (ENCORE_SHOPS_FILE), or the single default shop."""
    if path is None or not path.strip():
        return default_shops()
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ShopsFileError(f"{path}: cannot be read ({reason})") from None
    return parse_shops(text, path)


def parse_shops(text: str, source: str) -> Shops:
    """Parse and validate the text of a shops file; `source` names the file in errors."""
    def fail(where: str, reason: str) -> ShopsFileError:
        return ShopsFileError(f"{source}: {where}: {reason}" if where else f"{source}: {reason}")

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise fail("", f"not valid TOML ({exc})") from None
    for key in raw:
        if key != "shops":
            raise fail(key, "unknown key; the file holds only [shops.<name>] tables")
    tables = raw.get("shops")
    if not isinstance(tables, dict) or not tables:
        raise fail("shops", "required: at least one [shops.<name>] table")
    shops: dict[str, Shop] = {}
    for name, table in tables.items():
        shop = _parse_shop(name, table, fail)
        if shop.platform == "shopify":
            twin = next((other for other in shops.values() if other.domain == shop.domain
                         and other.platform == "shopify"), None)
            if twin is not None:
                raise fail(f"shops.{name}.domain", f"{shop.domain} is already the domain of shop {twin.name} "
                                                   "(Shopify webhooks find their shop by domain)")
        shops[name] = shop
    return Shops(shops, source)


def _parse_shop(name: str, table: object, fail: Fail) -> Shop:
    where = f"shops.{name}"
    if not SHOP_NAME.fullmatch(name):
        raise fail(where, "a shop's name must be 1-64 lowercase letters, digits, '-' or '_', "
                          "starting with a letter or digit")
    if not isinstance(table, dict):
        raise fail(where, "must be a table: [shops.<name>] with platform = ...")
    if "platform" not in table:
        raise fail(f"{where}.platform", 'required: "shopify", "woocommerce" or "none"')
    platform = table["platform"]
    if platform not in PLATFORMS:
        raise fail(f"{where}.platform", f'must be "shopify", "woocommerce" or "none", got {platform!r}')
    allowed = _KEYS_BY_PLATFORM[platform]
    for key in table:
        if key in allowed:
            continue
        if key in _SECRET_KEYS:
            raise fail(f"{where}.{key}", f"secrets are never written in this file; put it in an environment "
                                         f"variable and name that variable with {_SECRET_KEYS[key]} = \"...\"")
        if any(key in keys for keys in _KEYS_BY_PLATFORM.values()):
            raise fail(f"{where}.{key}", f"not used with platform {platform!r}")
        raise fail(f"{where}.{key}", f"unknown key (expected {', '.join(allowed)})")

    def text_field(key: str, required: bool) -> str | None:
        value = table.get(key)
        if value is None:
            if required:
                raise fail(f"{where}.{key}", f'required for platform "{platform}"')
            return None
        if not isinstance(value, str) or not value.strip():
            raise fail(f"{where}.{key}", "must be a non-empty string")
        return value.strip()

    secrets = {}
    for key in _SECRETS_BY_PLATFORM[platform]:
        variable = text_field(key, required=True)
        assert variable is not None
        if variable.lower().startswith(SECRET_PREFIXES) or not ENV_NAME.fullmatch(variable):
            looks = "this looks like a secret itself; " if variable.lower().startswith(SECRET_PREFIXES) else ""
            raise fail(f"{where}.{key}", f"{looks}must be the NAME of an environment variable (A-Z, 0-9, _), "
                                         f"like {name.upper().replace('-', '_')}_{key[:-4].upper()}; the secret "
                                         "goes in that variable, never in this file")
        secrets[key] = variable
    brand = text_field("brand", required=False)
    if brand is not None and (len(brand) > MAX_BRAND or any(ord(c) < 32 or ord(c) == 127 for c in brand)):
        raise fail(f"{where}.brand", f"must be at most {MAX_BRAND} characters on one line")
    domain = api_url = None
    if platform == "shopify":
        domain = normalized_domain(text_field("domain", required=True))
        if not MYSHOPIFY_DOMAIN.fullmatch(domain):
            raise fail(f"{where}.domain", "must be the shop's myshopify domain, like glow-us.myshopify.com "
                                          "(no https://, no path; not a custom domain)")
        api_url = _url(text_field("api_url", required=False), f"{where}.api_url", fail) or \
            f"https://{domain}/admin/api/{SHOPIFY_API_VERSION}/graphql.json"
    elif platform == "woocommerce":
        domain = _url(text_field("domain", required=True), f"{where}.domain", fail, site=True)
        assert domain is not None
        api_url = _url(text_field("api_url", required=False), f"{where}.api_url", fail) or \
            f"{domain}/wp-json/wc/v3/"
        api_url = api_url if api_url.endswith("/") else api_url + "/"  # endpoints are joined to it
    return Shop(name=name, platform=platform, domain=domain, api_url=api_url, brand=brand, **secrets)


def _url(value: str | None, where: str, fail: Fail, site: bool = False) -> str | None:
    """An http(s) URL without credentials (a secret in a URL is still a secret in the file);
    a site URL also without query or fragment, returned without its trailing slash."""
    if value is None:
        return None
    parts = urlsplit(value)
    if "@" in parts.netloc or (not parts.netloc and "@" in value):  # first: the error must not repeat them
        raise fail(where, "must not hold credentials; name their variables with the *_env keys")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise fail(where, f"must be an http(s) URL like https://shop.example, got {value!r}")
    if site and (parts.query or parts.fragment):
        raise fail(where, "must be the site's address, without ?query or #fragment")
    return value.rstrip("/") if site else value
