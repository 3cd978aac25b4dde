"""Shared fixtures: real services when they answer, a clear skip when they don't
(a failure instead when ENCORE_REQUIRE_SERVICES=1, as in CI)."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

REQUIRE_SERVICES = os.environ.get("ENCORE_REQUIRE_SERVICES") == "1"
PG_ADMIN_URL = os.environ.get("ENCORE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("ENCORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
RABBIT_URL = os.environ.get("ENCORE_TEST_RABBIT_URL", "amqp://guest:guest@127.0.0.1:5672//")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (ENCORE_REQUIRE_SERVICES=1)")
    pytest.skip(message)


@pytest.fixture()
def postgres_url():
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    name = f"encore_test_{uuid.uuid4().hex[:12]}"
    admin_dsn = PG_ADMIN_URL
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield admin_dsn.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def redis_url():
    """Redis with Encore's queues emptied. Kombu's exchange bindings are kept: a
    publisher in this process caches that it declared them (see README, crash safety)."""
    need_service("Redis", "127.0.0.1", 6379)
    import redis

    client = redis.Redis.from_url(REDIS_URL)

    def purge() -> None:
        for key in client.scan_iter():
            if not key.startswith(b"_kombu.binding"):
                client.delete(key)

    purge()
    yield REDIS_URL
    purge()


@pytest.fixture()
def rabbit_url():
    need_service("RabbitMQ", "127.0.0.1", 5672)
    return RABBIT_URL
