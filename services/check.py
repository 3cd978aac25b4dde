"""`encore check`: what an operator runs before the first deploy.

Each part of the configuration is tried for real (settings parsed, database
connected and migrated, broker connected, channel templates and campaign files parsed,
the email channel's SMTP server greeted and logged in to) and reported
on one line, so a broken setting shows up before a worker starts, not at 3 a.m.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import make_url

from coupons.model import CHANNELS

BROKER_TIMEOUT_SECONDS = 5.0
INBOUND_PATH = "/webhooks/sms/inbound"  # Twilio's inbound message webhook (web tier)


@dataclass(frozen=True)
class CheckLine:
    part: str
    ok: bool
    detail: str
    warning: bool = False

    def __str__(self) -> str:
        verdict = "ERROR" if not self.ok else "warn " if self.warning else "ok   "
        return f"{self.part:<16} {verdict} {self.detail}"


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def _try(part: str, probe: Callable[[], str]) -> CheckLine:
    try:
        return CheckLine(part, True, probe())
    except Exception as exc:  # every failure is reported on its line, never as a traceback
        return _failed(part, exc)


def _failed(part: str, exc: Exception) -> CheckLine:
    return CheckLine(part, False, f"{type(exc).__name__}: {exc}".splitlines()[0][:300])


def check_all(now: datetime, env: dict[str, str] | None = None) -> Iterator[CheckLine]:
    """One line per part; a part that cannot be checked because an earlier one failed says
    so. `now` dates the campaigns' next runs."""
    from coupons.markets import load_markets
    from config.settings import load_settings, prepare_data_dir

    try:
        settings = load_settings(env)
        prepare_data_dir(settings)
    except Exception as exc:
        yield CheckLine("settings", False, str(exc))
        return
    yield CheckLine("settings", True, f"data folder {settings.data_dir}" if settings.needs_data_dir
                    else "no local folder needed (database and broker are servers)")
    yield _try("markets", lambda: _markets(load_markets(settings.markets_file), settings.markets_file))
    yield _try("database", lambda: _database(settings.database_url))
    yield _try("broker", lambda: _broker(settings.broker_url))
    for channel in CHANNELS:
        template = settings.channel_templates.get(channel)
        if template is None:
            yield CheckLine(f"channel {channel}", True, "off (not set)")
            continue
        yield _channel(channel, template)
    yield from _whatsapp_templates(settings)
    if not settings.channel_templates:
        yield CheckLine("channels", True, "none is set: every delivery would end suppressed (no_channel); "
                                          "set ENCORE_CHANNEL_EMAIL or another ENCORE_CHANNEL_*", warning=True)
    yield from _campaigns(settings, now)
    yield from _shops(settings)
    yield _serve(settings)
    yield _twilio_inbound(settings)


def _whatsapp_templates(settings) -> Iterator[CheckLine]:
    """SPEC rule 16: the Cloud API sends only approved templates. Without the file WhatsApp
    carries no coupon (an error when whatsapp:// is set); with it, the languages the
    WhatsApp markets speak that have no template of their own (they get the default's)."""
    from channels.whatsapp_cloud import is_cloud_api_template
    from coupons.markets import load_markets
    from coupons.messages import resolve_language

    part = "whatsapp templates"
    cloud_api = is_cloud_api_template(settings.channel_templates.get("whatsapp", ""))
    templates = settings.whatsapp_templates
    if templates is None:
        if cloud_api:
            yield CheckLine(part, False, "ENCORE_WHATSAPP_TEMPLATES is not set: the Cloud API takes only approved "
                                         "templates, so every WhatsApp coupon goes to its next channel")
        return
    listed = f"{', '.join(f'{t.language}={t.name}' for t in templates.templates.values())}; default {templates.default}"
    try:
        markets = load_markets(settings.markets_file).by_name.values()
    except Exception:
        yield CheckLine(part, True, f"{listed}; languages not checked, the markets file is unusable", warning=True)
        return
    spoken = {resolve_language(None, language)[0] for market in markets if "whatsapp" in market.channels
              for language in (market.language, *market.country_languages.values())}
    missing = templates.missing(spoken)
    if missing:
        yield CheckLine(part, True, f"{listed}; no template for {', '.join(missing)} (the markets' WhatsApp "
                                    f"customers speaking it get the {templates.default} one)", warning=True)
    else:
        yield CheckLine(part, True, f"{listed}; every language of the WhatsApp markets has one")


def _shops(settings) -> Iterator[CheckLine]:
    """One line per shop (SPEC section 7): a platform shop is asked one read-only question
    with its own credentials, so a wrong token or URL shows here, not as shop_rejected
    deliveries."""
    from coupons.shops import missing_secrets
    from platforms.base import PlatformError
    from services.code_sync import platform_for

    for name, shop in sorted(settings.shops.by_name.items()):
        part = f"shop {name}"
        if shop.platform == "none":
            yield CheckLine(part, True, "platform none: codes are not made in a shop")
            continue
        missing = missing_secrets(shop, settings.shop_secrets)
        if missing:
            yield CheckLine(part, False, f"{shop.platform} at {shop.domain}: {', '.join(missing)} not set "
                                         "(the shops file names it for this shop's secret)")
            continue
        try:
            yield CheckLine(part, True, f"{shop.platform}: {platform_for(settings, name).check()}")
        except PlatformError as error:
            yield CheckLine(part, False, f"{shop.platform} at {shop.domain}: {error.message}")
        except Exception as error:  # noqa: BLE001 - reported on its line, never as a traceback
            yield _failed(part, error)


def _serve(settings) -> CheckLine:
    """`encore serve` refuses to start without its secret; say so before the deploy does."""
    if not settings.webhook_secret:
        return CheckLine("serve", True, "ENCORE_WEBHOOK_SECRET is not set: `encore serve` (the Procfile's web) "
                                        "will refuse to start", warning=True)
    parts = ["webhook secret set",
             "Shopify secret set" if settings.shopify_secret else "no ENCORE_SHOPIFY_SECRET (Shopify answers 401)",
             f"unsubscribe links at {settings.public_url}" if settings.public_url
             else "no ENCORE_PUBLIC_URL (no unsubscribe links)"]
    return CheckLine("serve", True, "; ".join(parts))


def _twilio_inbound(settings) -> CheckLine:
    """SPEC rule 18: STOP, START and HELP replies reach Encore only through Twilio's inbound
    webhook, which is verified with the account's auth token. Unset is a warning, not a
    failure (an install may not text at all); the token's value is never shown."""
    where = f"{settings.public_url}{INBOUND_PATH}" if settings.public_url else f"POST {INBOUND_PATH}"
    if not settings.twilio_auth_token:
        return CheckLine("twilio inbound", True, f"ENCORE_TWILIO_AUTH_TOKEN is not set: {where} answers 401, so SMS "
                                                 "replies (STOP, START, HELP) are not obeyed", warning=True)
    return CheckLine("twilio inbound", True, f"ENCORE_TWILIO_AUTH_TOKEN set: replies to {where} are verified "
                                             "with X-Twilio-Signature")


def _campaigns(settings, now: datetime) -> Iterator[CheckLine]:
    """One line per campaign file: its name, state and next run, or the field at fault."""
    from coupons.campaigns import iso_utc, load_campaigns, next_run_after
    from coupons.markets import load_markets
    from services.campaigns import campaigns_folder_of

    folder = campaigns_folder_of(settings)
    try:
        markets = load_markets(settings.markets_file)
    except Exception:
        yield CheckLine("campaigns", False, f"{folder}: not checked, the markets file is unusable")
        return
    campaigns, errors = load_campaigns(folder, markets.by_name)
    if not campaigns and not errors:
        yield CheckLine("campaigns", True, f"none in {folder}")
    for campaign in campaigns:
        state = "enabled" if campaign.enabled else "disabled"
        yield CheckLine(f"campaign {campaign.file}", True,
                        f"{campaign.name} ({state}), next run {iso_utc(next_run_after(campaign, now))}")
    for error in errors:
        yield CheckLine(f"campaign {error.file}", False, str(error))


def _markets(markets, path: str | None) -> str:
    return f"{len(markets.by_name)} markets from {path or 'the shipped file'}"


def _database(url: str) -> str:
    from store.db import engine_for

    engine = engine_for(url)
    with engine.connect() as connection:
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return f"{_safe_url(url)} ({engine.dialect.name}, schema {revision})"


def _broker(url: str) -> str:
    from kombu import Connection

    with Connection(url, connect_timeout=BROKER_TIMEOUT_SECONDS) as connection:
        connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_SECONDS)
        return f"{_safe_url(url)} ({connection.transport_cls})"


def _channel(channel: str, template: str) -> CheckLine:
    """The template parsed and, for email, one SMTP session (EHLO, TLS and AUTH as the URL
    says, QUIT; nothing sent): a wrong password or port shows here, not at the first send."""
    from channels.adapter import SmtpCheckError, check_channel

    part = f"channel {channel}"
    try:
        return CheckLine(part, True, check_channel(channel, template))
    except SmtpCheckError as error:  # already says what failed and where
        return CheckLine(part, False, str(error))
    except Exception as error:  # a template Encore cannot use: the message names the setting
        return _failed(part, error)
