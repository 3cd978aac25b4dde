"""The HTTP service (SPEC section 6): a FastAPI app over the shared services.

`create_app` builds what the routes share (`web.deps.AppDeps`) and mounts the routers
of `web.routers`, one per area; `serve` runs it under uvicorn with its limits.
Everything that touches the database runs in Starlette's thread pool, through the same
session scope as the command line.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from services.bootstrap import Runtime
from store.db import engine_for

from .answers import Refused, answer_refused
from .deps import AppDeps
from .metrics import make_registry
from .routers import ROUTERS


def create_app(runtime: Runtime) -> FastAPI:
    """The service for `runtime`: its clock, and its doorbell for intake (Celery in `serve`)."""
    if not runtime.settings.webhook_secret:
        from config.settings import SettingsError

        raise SettingsError("ENCORE_WEBHOOK_SECRET: not set; `encore serve` needs it to verify signed requests")
    app = FastAPI(
        title="Encore",
        version="1.0",
        description="Shop events in, repurchase coupons out (SPEC section 6). Every request that changes "
                    "something is signed: `X-Encore-Signature: sha256=<hex HMAC-SHA256 of the raw body>`, "
                    "key ENCORE_WEBHOOK_SECRET.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.deps = AppDeps(runtime=runtime, clock=runtime.clock,
                             metrics=make_registry(runtime.database_url, runtime.clock,
                                                   sorted(runtime.settings.shops.by_name)),
                             webhook_secret=runtime.settings.webhook_secret)
    app.add_exception_handler(Refused, answer_refused)
    for router in ROUTERS:
        app.include_router(router)
    return app


class _HideUnsubscribeTokens(logging.Filter):
    """Access log lines show `/unsubscribe/…`: a token names a customer and works as a key."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and str(args[2]).startswith("/unsubscribe/"):
            record.args = (args[0], args[1], "/unsubscribe/…", args[3], args[4])
        return True


MAX_CONNECTIONS = 500
"""Connections (or requests in flight) one `encore serve` process takes before it answers
503: below the usual limit of 1,024 open files, so a flood of connections gets a clear
answer instead of failing `accept()`; far above what shops and Shopify send at once."""
MAX_HEADER_BYTES = 16 * 1024
"""A request line and headers larger than this are answered 400 (h11's default, pinned)."""
KEEP_ALIVE_SECONDS = 5
"""An idle connection between two requests is closed after this (uvicorn's default, pinned)."""


def serve(host: str, port: int) -> int:
    """`encore serve`: migrate, then run uvicorn until interrupted.

    uvicorn's own limits are set here (README "Slow and greedy clients"); the body
    deadline is the app's (`read_body`), as uvicorn has none."""
    import uvicorn

    from tasks.app import runtime as process_runtime

    runtime = process_runtime()
    app = create_app(runtime)
    engine_for(runtime.database_url)  # create or upgrade the schema before the first request
    config = uvicorn.Config(app, host=host, port=port, log_level="info", proxy_headers=True, server_header=False,
                            http="h11", timeout_keep_alive=KEEP_ALIVE_SECONDS, limit_concurrency=MAX_CONNECTIONS,
                            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
                            timeout_graceful_shutdown=int(runtime.settings.body_timeout_seconds) + 1)
    logging.getLogger("uvicorn.access").addFilter(_HideUnsubscribeTokens())
    uvicorn.Server(config).run()
    return 0

