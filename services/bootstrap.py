"""The composition root (model: cosmicpython's `bootstrap.py`): one function builds
what every use case needs besides a session, once per process, and the use cases get
it as a parameter. Nothing below reads the environment, the system clock or a broker
of its own accord.

Who calls it: the entry points. The worker's tasks and `encore serve` take the
process's runtime from `tasks.app.runtime()` (its doorbell is the Celery app); the
command line and the demo compose one the same way; tests pass a fake clock and an
in-memory doorbell.

The database engine is not opened here: `store.db` makes one per URL on first use,
in the process that uses it. A worker's parent builds its runtime before forking its
pool, and a connection opened there would be shared by every child; and a worker
must start while the database is still away (its tasks retry).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

import redis

from channels.adapter import validate_channel_template
from channels.pool import SenderPool, pool_for
from channels.whatsapp_cloud import is_cloud_api_template, parse_cloud_api_template
from channels.ratelimit import Limiter, make_rate_limiter
from config.settings import Settings, load_settings, prepare_data_dir
from coupons.markets import Markets, load_markets

from .ports import Clock, Doorbell, NoDoorbell


def utcnow() -> datetime:
    """The system clock: the default `clock` of a runtime, read through `Runtime.clock`."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    markets: Markets
    clock: Clock = utcnow
    doorbell: Doorbell = field(default_factory=NoDoorbell)
    stopping: threading.Event = field(default_factory=threading.Event, compare=False)
    """Set when the process is asked to stop (SIGTERM, SPEC rule 19): sends in flight finish
    and are recorded, and what no sending thread has taken yet goes back to the relay."""

    @property
    def database_url(self) -> str:
        return self.settings.database_url

    @property
    def configured_channels(self) -> frozenset[str]:
        return frozenset(self.settings.channel_templates)

    @property
    def whatsapp_cloud_api(self) -> bool:
        """WhatsApp goes through the Cloud API (whatsapp://), so a coupon must be an
        approved template (SPEC rule 16); any other WhatsApp URL sends the text."""
        return is_cloud_api_template(self.settings.channel_templates.get("whatsapp", ""))

    def sender_pool(self, channel: str) -> SenderPool:
        """This process's senders for `channel` (kept connections, at most the channel's
        concurrency idle); a forked child gets its own."""
        return pool_for(channel, self.settings.channel_templates[channel], self.settings.concurrency_for(channel),
                        self.settings.whatsapp_api_url)

    def rate_limiter(self, channel: str) -> Limiter | None:
        """The channel's shared token bucket (in Redis when the broker is Redis), or None
        when the channel is not limited."""
        rate = self.settings.rate_limits.get(channel)
        return _limiter_for(channel, rate, self.settings.redis_url) if rate else None


@lru_cache(maxsize=16)
def _limiter_for(channel: str, rate: float, redis_url: str | None) -> Limiter:
    client = redis.Redis.from_url(redis_url) if redis_url else None
    return make_rate_limiter(channel, rate, max(1, math.ceil(rate)), client)


def bootstrap(settings: Settings | None = None, *, clock: Clock = utcnow, doorbell: Doorbell | None = None) -> Runtime:
    """Settings (from the environment unless given), markets and channel templates, all
    checked now: a broken Apprise URL, markets file or unwritable data folder is a clear
    error at start, not a failure later. Channel templates are checked here rather than
    in `config.settings`, which stays below the channels."""
    settings = settings or load_settings()
    prepare_data_dir(settings)
    for channel, template in settings.channel_templates.items():
        validate_channel_template(channel, template)
        if channel == "whatsapp" and is_cloud_api_template(template):
            parse_cloud_api_template(template)  # the token and phone-number id, named if wrong
    return Runtime(settings=settings, markets=load_markets(settings.markets_file), clock=clock,
                   doorbell=doorbell if doorbell is not None else NoDoorbell())
