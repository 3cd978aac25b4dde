"""The one place that reads the environment (SPEC section 3).

Everything has a default that needs no server, so a first run works with
nothing set; production points the URLs at PostgreSQL and Redis.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from coupons.errors import ConfigError
from coupons.model import CHANNELS
from coupons.shops import Shops, default_shops, load_shops

DEFAULT_RETRY_BASE_SECONDS = 60.0
DEFAULT_LEASE_SECONDS = 300.0
DEFAULT_SEND_CONCURRENCY = 16
"""Sends in flight per channel per worker process (prefork child). Chosen by measurement
(README, "Many sends in flight"): against a 150 ms HTTP provider one child with 16 threads
sends ~100 msg/s; more mostly adds idle connections at the provider. Providers cap
connections per client too, so it is a setting, per channel."""
MAX_SEND_CONCURRENCY = 256
MIN_SECRET_LENGTH = 16
"""ENCORE_WEBHOOK_SECRET signs every request and every unsubscribe link: a shorter or
blank one can be guessed (SPEC section 6)."""
DEFAULT_BODY_TIMEOUT_SECONDS = 30.0
"""How long `encore serve` waits for a request's whole body after its headers. uvicorn
has no such limit: without it a client that stops half-way holds its connection (and a
slot under the concurrency limit) forever. 30 s moves 1 MiB at 35 kB/s."""


class SettingsError(ConfigError, ValueError):
    """A setting is unusable; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    broker_url: str
    markets_file: str | None
    channel_templates: dict[str, str] = field(default_factory=dict)
    retry_base_seconds: float = DEFAULT_RETRY_BASE_SECONDS
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    max_attempts_per_channel: int = 5
    refill_ratio: Decimal = Decimal("0.70")
    webhook_secret: str | None = None
    shopify_secret: str | None = None
    rate_limits: dict[str, float] = field(default_factory=dict)
    campaigns_dir: str | None = None
    public_url: str | None = None
    send_concurrency: dict[str, int] = field(default_factory=dict)
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS
    shops: Shops = field(default_factory=default_shops)
    """SPEC section 7: the shops file (ENCORE_SHOPS_FILE), or the one shop `default`."""
    shop_secrets: dict[str, str] = field(default_factory=dict, repr=False)
    whatsapp_templates_file: str | None = None
    """ENCORE_WHATSAPP_TEMPLATES (rule 16): the approved templates per language, or None."""
    """The values of the variables the shops file names for secrets (and only those),
    by variable name; a variable that is unset or blank is absent."""

    def concurrency_for(self, channel: str) -> int:
        """Sends of `channel` one worker process may have in flight at once."""
        return self.send_concurrency.get(channel, DEFAULT_SEND_CONCURRENCY)

    @property
    def uses_embedded_broker(self) -> bool:
        return self.broker_url.startswith(("sqla+", "filesystem:", "memory:"))

    @property
    def needs_data_dir(self) -> bool:
        """True when an embedded default (SQLite file, SQLite broker) lives in `data_dir`."""
        return any(url.startswith(("sqlite", "sqla+sqlite")) and str(self.data_dir) in url
                   for url in (self.database_url, self.broker_url))

    @property
    def redis_url(self) -> str | None:
        """Redis for shared rate limits: the broker when it is Redis."""
        return self.broker_url if self.broker_url.startswith(("redis://", "rediss://")) else None


def _number(env: dict[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}: must be a number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name}: must be >= {minimum}")
    return value


def _whole(env: dict[str, str], name: str, default: int) -> int:
    """A count of sends in flight: a whole number from 1 to MAX_SEND_CONCURRENCY."""
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}: must be a whole number, got {raw!r}") from None
    if not 1 <= value <= MAX_SEND_CONCURRENCY:
        raise SettingsError(f"{name}: must be between 1 and {MAX_SEND_CONCURRENCY}")
    return value


def prepare_data_dir(settings: Settings) -> None:
    """Create the folder the embedded defaults keep their files in, when they need one.

    A production layout (PostgreSQL + Redis or RabbitMQ) needs no local folder at all,
    so a read-only container filesystem is fine there; where one is needed and cannot
    be written, the error names the setting instead of a traceback from SQLite."""
    if not settings.needs_data_dir:
        return
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        probe = settings.data_dir / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise SettingsError(
            f"ENCORE_DATA_DIR: {settings.data_dir} is not a writable folder ({exc.strerror or exc}); "
            "set ENCORE_DATA_DIR to one, or point ENCORE_DATABASE_URL and ENCORE_BROKER_URL at servers"
        ) from None


def load_settings(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    data_dir = Path(env.get("ENCORE_DATA_DIR") or "./var").resolve()
    database_url = env.get("ENCORE_DATABASE_URL") or f"sqlite:///{data_dir / 'encore.db'}"
    broker_url = env.get("ENCORE_BROKER_URL") or f"sqla+sqlite:///{data_dir / 'broker.db'}"
    templates = {
        channel: env[f"ENCORE_CHANNEL_{channel.upper()}"]
        for channel in CHANNELS
        if env.get(f"ENCORE_CHANNEL_{channel.upper()}")
    }
    rate_limits = {
        channel: _number(env, f"ENCORE_RATE_LIMIT_{channel.upper()}", 0.0)
        for channel in CHANNELS
        if env.get(f"ENCORE_RATE_LIMIT_{channel.upper()}")
    }
    webhook_secret = _webhook_secret(env)
    public_url = _public_url(env)
    default_concurrency = _whole(env, "ENCORE_SEND_CONCURRENCY", DEFAULT_SEND_CONCURRENCY)
    send_concurrency = {
        channel: _whole(env, f"ENCORE_SEND_CONCURRENCY_{channel.upper()}", default_concurrency)
        for channel in CHANNELS
    }
    shops = load_shops(env.get("ENCORE_SHOPS_FILE") or None)
    shop_secrets = {name: env[name] for shop in shops.by_name.values() for name in shop.secret_variables
                    if (env.get(name) or "").strip()}
    ratio = _number(env, "ENCORE_REFILL_RATIO", 0.70)
    if not 0 < ratio <= 1:
        raise SettingsError("ENCORE_REFILL_RATIO: must be in (0, 1]")
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        broker_url=broker_url,
        markets_file=env.get("ENCORE_MARKETS_FILE") or None,
        channel_templates=templates,
        retry_base_seconds=_number(env, "ENCORE_RETRY_BASE_SECONDS", DEFAULT_RETRY_BASE_SECONDS),
        lease_seconds=_number(env, "ENCORE_LEASE_SECONDS", DEFAULT_LEASE_SECONDS, minimum=1.0),
        max_attempts_per_channel=int(_number(env, "ENCORE_MAX_ATTEMPTS_PER_CHANNEL", 5, minimum=1)),
        refill_ratio=Decimal(str(ratio)),
        webhook_secret=webhook_secret,
        shopify_secret=env.get("ENCORE_SHOPIFY_SECRET") or None,
        rate_limits=rate_limits,
        campaigns_dir=env.get("ENCORE_CAMPAIGNS_DIR") or None,
        public_url=public_url,
        send_concurrency=send_concurrency,
        body_timeout_seconds=_number(env, "ENCORE_BODY_TIMEOUT_SECONDS", DEFAULT_BODY_TIMEOUT_SECONDS, minimum=0.1),
        shops=shops,
        shop_secrets=shop_secrets,
        whatsapp_templates_file=env.get("ENCORE_WHATSAPP_TEMPLATES") or None,
    )


def _webhook_secret(env: dict[str, str]) -> str | None:
    """ENCORE_WEBHOOK_SECRET, refused at start (every process) when it is too weak to sign
    with; unset or empty means none."""
    secret = env.get("ENCORE_WEBHOOK_SECRET") or None
    if secret is not None and len(secret.strip()) < MIN_SECRET_LENGTH:
        raise SettingsError(f"ENCORE_WEBHOOK_SECRET: must be at least {MIN_SECRET_LENGTH} characters, not counting "
                            f"blanks (it has {len(secret.strip())}); use a long random string, e.g. the output of "
                            "`openssl rand -hex 32`")
    return secret


def _public_url(env: dict[str, str]) -> str | None:
    """ENCORE_PUBLIC_URL without its trailing slash. Unsubscribe links are signed with
    ENCORE_WEBHOOK_SECRET, so a public URL without the secret is refused at start."""
    raw = (env.get("ENCORE_PUBLIC_URL") or "").strip()
    if not raw:
        return None
    if not raw.startswith(("https://", "http://")) or len(raw.split("://", 1)[1].strip("/")) == 0:
        raise SettingsError(f"ENCORE_PUBLIC_URL: must be an http(s) URL like https://encore.example.com, got {raw!r}")
    if not env.get("ENCORE_WEBHOOK_SECRET"):
        raise SettingsError("ENCORE_WEBHOOK_SECRET: required when ENCORE_PUBLIC_URL is set "
                            "(unsubscribe links are signed with it)")
    return raw.rstrip("/")
