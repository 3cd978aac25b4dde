"""A send backlog longer than the lease is not copied into the broker again and again
(every copy is a send task more for workers already behind), while a message the
broker really lost is still enqueued again."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.ports import SEND_DELIVERIES
from tests.support import order_paid


@pytest.fixture()
def broker(redis_url):
    """The Celery app pointed at the test's Redis, with no worker consuming; restored after."""
    import redis

    from config.settings import load_settings
    from tasks.app import configure

    configure(load_settings({"ENCORE_BROKER_URL": redis_url}))
    yield redis.Redis.from_url(redis_url)
    configure(load_settings())


@pytest.fixture()
def celery_runtime(services, broker):
    """The services' runtime, ringing through that broker as a worker's or beat's does."""
    from tasks.app import app
    from tasks.doorbell import CeleryDoorbell

    return replace(services.runtime, doorbell=CeleryDoorbell(app))


def test_a_backlog_waiting_in_the_broker_longer_than_the_lease_is_not_enqueued_again(services, celery_runtime):
    from services.relay import relay_once

    # Given 250 due deliveries: two send messages' worth
    services.emit(*[order_paid(f"e{n}", customer_id=f"c{n:03d}", occurred_at=services.clock(), timezone="UTC")
                    for n in range(250)])
    assert relay_once(celery_runtime) == 250
    assert celery_runtime.doorbell.waiting(SEND_DELIVERIES) == 2
    # When no worker gets to them for three leases while the relay keeps ticking
    for _ in range(3):
        services.clock.advance(seconds=services.runtime.settings.lease_seconds + 1)
        assert relay_once(celery_runtime) == 0
    # Then the broker still holds each delivery once
    assert celery_runtime.doorbell.waiting(SEND_DELIVERIES) == 2


def test_deliveries_whose_messages_the_broker_lost_are_enqueued_again_after_the_lease(services, broker,
                                                                                      celery_runtime):
    from services.relay import relay_once

    # Given due deliveries enqueued once, and a broker that then loses every message
    services.emit(*[order_paid(f"e{n}", customer_id=f"c{n}", occurred_at=services.clock(), timezone="UTC")
                    for n in range(3)])
    assert relay_once(celery_runtime) == 3
    broker.flushdb()
    assert celery_runtime.doorbell.waiting(SEND_DELIVERIES) == 0
    # When less than a lease has passed, nothing is presumed lost yet
    assert relay_once(celery_runtime) == 0
    # Then after the lease they are enqueued again, once
    services.clock.advance(seconds=services.runtime.settings.lease_seconds + 1)
    assert relay_once(celery_runtime) == 3
    assert celery_runtime.doorbell.waiting(SEND_DELIVERIES) == 1
