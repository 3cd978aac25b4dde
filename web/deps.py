"""What the routes share, built once by `create_app` and handed to each route as a
FastAPI dependency (`deps: Deps`), so a router module needs no closure over the app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client.registry import CollectorRegistry

from services.bootstrap import Runtime
from services.ports import Clock


@dataclass(frozen=True)
class AppDeps:
    runtime: Runtime
    clock: Clock
    metrics: CollectorRegistry
    webhook_secret: str
    """ENCORE_WEBHOOK_SECRET: `create_app` refuses to build a service without it."""


def app_deps(request: Request) -> AppDeps:
    return request.app.state.deps


Deps = Annotated[AppDeps, Depends(app_deps)]
