"""GET /metrics: Prometheus text, read from the database at scrape time.

Counters kept in process memory would be wrong twice over: the worker processes
do the sending, not this one, and there are several of them. The database holds
every event and delivery, so a custom collector asks it (a few GROUP BYs) each
scrape, and every `encore serve` replica reports the same, complete figures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from store.db import session_scope

from .aggregates import metrics_snapshot


class DatabaseCollector(Collector):
    """With several shops (SPEC section 7) every sample carries a `shop` label, one per
    shop; an install with one shop keeps the label-free output it always had."""

    def __init__(self, database_url: str, clock: Callable[[], datetime], shops: Sequence[str] = ()):
        self.database_url = database_url
        self.clock = clock
        self.shops = list(shops) if len(shops) > 1 else []

    def collect(self) -> Iterator[Metric]:
        with session_scope(self.database_url) as session:
            now = self.clock()
            snaps = ([(None, metrics_snapshot(session, now))] if not self.shops
                     else [(shop, metrics_snapshot(session, now, shop)) for shop in self.shops])
        shop_label = ["shop"] if self.shops else []

        def labels(shop: str | None, *values: str) -> list[str]:
            return [*values, *([shop] if shop is not None else [])]

        events = CounterMetricFamily("encore_events", "Events received, by type and outcome "
                                     "(applied, pending, rejected, failed_to_apply).",
                                     labels=["type", "outcome", *shop_label])
        deliveries = GaugeMetricFamily("encore_deliveries", "Deliveries by state and channel "
                                       "(channel 'none' until one is chosen).", labels=["state", "channel", *shop_label])
        latency = HistogramMetricFamily("encore_send_latency_seconds", "Seconds from a delivery's due time to its "
                                        "send (sent deliveries).", labels=shop_label)
        on_time = GaugeMetricFamily("encore_on_time_rate", "Share of finished deliveries (sent or expired) sent "
                                    "before their deadline.", labels=shop_label)
        backlog = GaugeMetricFamily("encore_due_backlog", "Deliveries due now but not sent yet.", labels=shop_label)
        oldest = GaugeMetricFamily("encore_oldest_due_age_seconds", "How long the oldest due, unsent delivery has "
                                   "been waiting (0 when none).", labels=shop_label)
        for shop, snap in snaps:
            for (event_type, outcome), count in sorted(snap.events.items()):
                events.add_metric(labels(shop, event_type, outcome), count)
            for (state, channel), count in sorted(snap.deliveries.items()):
                deliveries.add_metric(labels(shop, state, channel), count)
            latency.add_metric(labels(shop), [*[(_le(bound), count) for bound, count in snap.latency_buckets],
                                              ("+Inf", snap.latency_count)], snap.latency_sum)
            on_time.add_metric(labels(shop), snap.on_time_rate)
            backlog.add_metric(labels(shop), snap.due_backlog)
            oldest.add_metric(labels(shop), snap.oldest_due_age_seconds)
        yield from (events, deliveries, latency, on_time, backlog, oldest)


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def make_registry(database_url: str, clock: Callable[[], datetime], shops: Sequence[str] = ()) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(database_url, clock, shops))
    return registry
