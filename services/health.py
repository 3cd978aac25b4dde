"""Whether this process can reach what it needs: the database and the broker
(`GET /healthz`, which a load balancer or the production smoke polls)."""

from __future__ import annotations

from sqlalchemy import text

from store.db import engine_for

from .bootstrap import Runtime

PROBE_TIMEOUT_SECONDS = 3
"""A broker that does not answer within this is reported, instead of holding the probe."""


def health_report(runtime: Runtime) -> dict[str, str]:
    """`{"database": "ok" | "error: …", "broker": "ok" | "error: …"}`; every failure is an
    answer (its type and first line), never an exception."""
    report = {}
    try:
        with engine_for(runtime.database_url).connect() as connection:
            connection.execute(text("SELECT 1"))
        report["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        report["database"] = _failure(exc)
    try:
        from kombu import Connection

        with Connection(runtime.settings.broker_url, connect_timeout=PROBE_TIMEOUT_SECONDS) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0,
                                         timeout=PROBE_TIMEOUT_SECONDS)
        report["broker"] = "ok"
    except Exception as exc:  # noqa: BLE001
        report["broker"] = _failure(exc)
    return report


def healthy(report: dict[str, str]) -> bool:
    return all(value == "ok" for value in report.values())


def _failure(exc: Exception) -> str:
    return f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
