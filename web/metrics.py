"""GET /metrics: Prometheus text, read from the database at scrape time.

Counters kept in process memory would be wrong twice over: the worker processes
do the sending, not this one, and there are several of them. The database holds
every event and delivery, so a custom collector asks it (a few GROUP BYs) each
scrape, and every `encore serve` replica reports the same, complete figures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from store.db import session_scope

from .aggregates import metrics_snapshot


class DatabaseCollector(Collector):
    def __init__(self, database_url: str, clock: Callable[[], datetime]):
        self.database_url = database_url
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        with session_scope(self.database_url) as session:
            snap = metrics_snapshot(session, self.clock())
        events = CounterMetricFamily("encore_events", "Events received, by type and outcome "
                                     "(applied, pending, rejected, failed_to_apply).", labels=["type", "outcome"])
        for (event_type, outcome), count in sorted(snap.events.items()):
            events.add_metric([event_type, outcome], count)
        yield events
        deliveries = GaugeMetricFamily("encore_deliveries", "Deliveries by state and channel "
                                       "(channel 'none' until one is chosen).", labels=["state", "channel"])
        for (state, channel), count in sorted(snap.deliveries.items()):
            deliveries.add_metric([state, channel], count)
        yield deliveries
        yield HistogramMetricFamily(
            "encore_send_latency_seconds", "Seconds from a delivery's due time to its send (sent deliveries).",
            buckets=[*[(_le(bound), count) for bound, count in snap.latency_buckets],
                     ("+Inf", snap.latency_count)],
            sum_value=snap.latency_sum)
        yield GaugeMetricFamily("encore_on_time_rate", "Share of finished deliveries (sent or expired) sent "
                                "before their deadline.", value=snap.on_time_rate)
        yield GaugeMetricFamily("encore_due_backlog", "Deliveries due now but not sent yet.",
                                value=snap.due_backlog)
        yield GaugeMetricFamily("encore_oldest_due_age_seconds", "How long the oldest due, unsent delivery has "
                                "been waiting (0 when none).", value=snap.oldest_due_age_seconds)


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def make_registry(database_url: str, clock: Callable[[], datetime]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(database_url, clock))
    return registry
