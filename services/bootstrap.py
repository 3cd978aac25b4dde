"""What every use case needs besides a session: settings, markets, channels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from channels.adapter import validate_channel_template
from coupons.markets import Markets, load_markets
from config.settings import Settings, load_settings, prepare_data_dir


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    markets: Markets

    @property
    def database_url(self) -> str:
        return self.settings.database_url

    @property
    def configured_channels(self) -> frozenset[str]:
        return frozenset(self.settings.channel_templates)


def build_runtime(settings: Settings | None = None) -> Runtime:
    """Settings, markets and channel templates, all checked now: a broken Apprise URL,
    markets file or unwritable data folder is a clear error at start, not a failure later."""
    settings = settings or load_settings()
    prepare_data_dir(settings)
    for channel, template in settings.channel_templates.items():
        validate_channel_template(channel, template)
    return Runtime(settings=settings, markets=load_markets(settings.markets_file))


@lru_cache(maxsize=1)
def current_runtime() -> Runtime:
    """The process-wide runtime built from the environment (workers, command line)."""
    return build_runtime()


Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The one clock read of the use cases; the domain below them is handed `now`."""
    return datetime.now(UTC)
