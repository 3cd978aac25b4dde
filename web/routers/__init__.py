"""The service's routes, one `APIRouter` per area. `create_app` mounts every router in
`ROUTERS`: a new area is a module here with a `router`, added to the tuple.

Each route only translates HTTP: it takes its body through a dependency of
`web.signing` (size, deadline, signature), parses it, calls one service and maps the
outcome to an answer. What the request does is decided in `services/`.
"""

from __future__ import annotations

from fastapi import APIRouter

from . import coupons, intake, replies, shopify, unsubscribe, views

ROUTERS: tuple[APIRouter, ...] = (intake.router, shopify.router, coupons.router, unsubscribe.router, replies.router,
                                  views.router)
"""In the order of the OpenAPI document: the routes that change something, then the views."""
