"""One family of errors: whatever Encore refuses on purpose can be caught by its root,
and by the class callers caught before (`ValueError`), so no refusal escapes as a
traceback and no old `except ValueError` stops catching."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from coupons.errors import ConfigError, EncoreError, EventError, RenderError, ShopError

PRODUCT_PACKAGES = ("coupons", "config", "store", "channels", "platforms", "services")


def _defined_errors() -> list[type[BaseException]]:
    found = []
    for package_name in PRODUCT_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, f"{package_name}."):
            if ".migrations" in info.name:
                continue
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                if (inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == info.name
                        and not name.startswith("_")):
                    found.append(value)
    return found


def test_every_error_encore_defines_descends_from_one_root():
    # Given every public exception class of the product's modules
    errors = _defined_errors()
    assert len(errors) > 10
    # Then each one is an EncoreError, so an entry point can catch them all at once
    assert [e.__qualname__ for e in errors if not issubclass(e, EncoreError)] == []


@pytest.mark.parametrize(("module", "name", "family"), [
    ("config.settings", "SettingsError", ConfigError),
    ("coupons.markets", "MarketsFileError", ConfigError),
    ("coupons.markets", "CountryZonesFileError", ConfigError),
    ("coupons.campaigns", "CampaignFileError", ConfigError),
    ("coupons.shops", "ShopsFileError", ConfigError),
    ("coupons.whatsapp", "WhatsAppTemplatesError", ConfigError),
    ("coupons.money", "CurrencyTableError", ConfigError),
    ("coupons.sms_hours", "SmsHoursError", ConfigError),
    ("coupons.experiments", "ExperimentFieldError", ConfigError),
    ("channels.adapter", "ChannelConfigError", ConfigError),
    ("channels.smtp", "SmtpCheckError", ConfigError),
    ("coupons.events", "EventError", EventError),
    ("coupons.feedback", "FeedbackError", EventError),
    ("coupons.shopify_orders", "ShopifyPayloadError", EventError),
    ("coupons.money", "UnknownCurrency", RenderError),
    ("coupons.shops", "UnknownShopError", ShopError),
    ("platforms.base", "PlatformError", ShopError),
])
def test_each_error_sits_in_its_family(module, name, family):
    assert issubclass(getattr(importlib.import_module(module), name), family)


@pytest.mark.parametrize(("module", "name"), [
    ("config.settings", "SettingsError"), ("coupons.markets", "MarketsFileError"),
    ("coupons.campaigns", "CampaignFileError"), ("coupons.shops", "ShopsFileError"),
    ("coupons.shops", "UnknownShopError"), ("coupons.events", "EventError"), ("coupons.shopify_orders", "ShopifyPayloadError"),
    ("channels.adapter", "ChannelConfigError"), ("coupons.unsubscribe", "BadToken"),
])
def test_errors_once_caught_as_value_errors_still_are(module, name):
    assert issubclass(getattr(importlib.import_module(module), name), ValueError)


def test_a_shopify_payload_error_reads_as_before():
    from coupons.shopify_orders import ShopifyPayloadError

    error = ShopifyPayloadError("line_items[0].sku", "required (or variant_id)")
    assert (str(error), error.field, error.reason) == ("line_items[0].sku: required (or variant_id)",
                                                       "line_items[0].sku", "required (or variant_id)")
