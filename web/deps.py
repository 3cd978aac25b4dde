"""What the routes share, built once by `create_app` and handed to each route as a
FastAPI dependency (`deps: Deps`), so a router module needs no closure over the app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client.registry import CollectorRegistry

from services.runtime import Clock, Runtime

Enqueue = Callable[[list[str]], None]


@dataclass(frozen=True)
class AppDeps:
    runtime: Runtime
    clock: Clock
    enqueue: Enqueue
    """Rings the intake doorbell with stored event ids."""
    metrics: CollectorRegistry
    webhook_secret: str
    """ENCORE_WEBHOOK_SECRET: `create_app` refuses to build a service without it."""


def app_deps(request: Request) -> AppDeps:
    return request.app.state.deps


Deps = Annotated[AppDeps, Depends(app_deps)]
