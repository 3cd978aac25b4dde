"""Reading and verifying request bodies: a size limit and a deadline enforced while
reading, and signatures compared in constant time over the exact bytes received.

Bodies are read by hand, never parsed by the framework first: signatures are over the
exact bytes received, and the 1 MiB limit must stop reading at the limit. A route takes
its body through one of the dependencies at the end (`body: SignedBody`), which answer
413, 408 or 401 before the route runs; nothing has been stored by then.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from config.settings import Settings
from coupons.shopify_orders import shopify_signature_ok
from coupons.shops import DEFAULT_SHOP

from .answers import Refused
from .deps import Deps

MAX_BODY_BYTES = 1024 * 1024
"""SPEC section 6: 1 MiB; a larger body is answered 413 without reading the rest."""

SIGNATURE_HEADER = "X-Encore-Signature"


class BodyTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    """The client did not send its whole body in time (a stalled or trickling client)."""


async def read_body(request: Request, limit: int = MAX_BODY_BYTES, timeout: float | None = None) -> bytes:
    """The raw body; BodyTooLarge as soon as it passes `limit` (declared or read), and
    BodyTimeout when all of it has not arrived `timeout` seconds after the call.

    uvicorn bounds only the wait between requests (keep-alive), never a request's body:
    this deadline is the one that frees the connection of a client that stops half-way."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise BodyTooLarge
        except ValueError:
            pass  # the server rejects a malformed Content-Length itself
    received = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                received += chunk
                if len(received) > limit:
                    raise BodyTooLarge
    except TimeoutError:
        raise BodyTimeout from None
    return bytes(received)


def signature_for(secret: str, body: bytes) -> str:
    """What a client puts in X-Encore-Signature."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    if not header:
        return False
    expected = signature_for(secret, body).encode("ascii")
    given = header.strip().lower()  # hex digits in either case
    return hmac.compare_digest(expected, given.encode("ascii", "replace"))


SIGNED = {"parameters": [{"name": SIGNATURE_HEADER, "in": "header", "required": True,
                          "description": "`sha256=` + hex HMAC-SHA256 of the raw body, key ENCORE_WEBHOOK_SECRET",
                          "schema": {"type": "string"}}]}
"""The `openapi_extra` of a route that takes a `SignedBody` (the dependency reads the
header itself, so that a missing one is 401, not FastAPI's 422)."""


async def raw_body(request: Request, deps: Deps) -> bytes:
    """The raw body; 413 when it is over 1 MiB, 408 when it is not all there within
    ENCORE_BODY_TIMEOUT_SECONDS (and the connection is closed: uvicorn closes it after a
    response that says so)."""
    timeout = deps.runtime.settings.body_timeout_seconds
    try:
        return await read_body(request, timeout=timeout)
    except BodyTooLarge:
        raise Refused(413, f"body: larger than {MAX_BODY_BYTES // 1024 // 1024} MiB") from None
    except BodyTimeout:
        raise Refused(408, f"body: not received within {timeout:g} s", {"Connection": "close"}) from None


RawBody = Annotated[bytes, Depends(raw_body)]


async def signed_body(request: Request, body: RawBody, deps: Deps) -> bytes:
    """The raw body, signed with the webhook secret (401 otherwise)."""
    if not signature_ok(deps.webhook_secret, body, request.headers.get(SIGNATURE_HEADER)):
        raise Refused(401, f"{SIGNATURE_HEADER}: missing or wrong signature")
    return body


SignedBody = Annotated[bytes, Depends(signed_body)]


@dataclass(frozen=True)
class ShopifyDelivery:
    """A Shopify webhook's body, verified with the secret of the shop it came from."""

    shop: str
    body: bytes


SHOP_DOMAIN_HEADER = "X-Shopify-Shop-Domain"


def shopify_secret(settings: Settings, domain: str | None) -> tuple[str, str]:
    """(shop, secret) for a webhook from `domain` (SPEC section 7): with a shops file, the
    Shopify shop of that domain and the secret its `webhook_secret_env` names; without
    one, the default shop and ENCORE_SHOPIFY_SECRET. Refused (401) naming why otherwise."""
    if settings.shops.source is None:
        if not settings.shopify_secret:
            raise Refused(401, "ENCORE_SHOPIFY_SECRET is not set: Shopify webhooks cannot be verified")
        return DEFAULT_SHOP, settings.shopify_secret
    shop = settings.shops.for_shopify_domain(domain)
    if shop is None:
        raise Refused(401, f"{SHOP_DOMAIN_HEADER}: {(domain or '').strip()[:100]!r} is not the domain of a Shopify "
                           "shop in ENCORE_SHOPS_FILE")
    secret = settings.shop_secrets.get(shop.webhook_secret_env or "")
    if not secret:
        raise Refused(401, f"{shop.webhook_secret_env} is not set: webhooks of shop {shop.name} cannot be verified")
    return shop.name, secret


async def shopify_body(request: Request, body: RawBody, deps: Deps) -> ShopifyDelivery:
    """The raw body, signed by Shopify with its shop's secret (401 otherwise, and when the
    shop is unknown or its secret is not set)."""
    shop, secret = shopify_secret(deps.runtime.settings, request.headers.get(SHOP_DOMAIN_HEADER))
    if not shopify_signature_ok(secret, body, request.headers.get("x-shopify-hmac-sha256")):
        raise Refused(401, "X-Shopify-Hmac-Sha256: missing or wrong signature" +
                      ("" if shop == DEFAULT_SHOP and deps.runtime.settings.shops.source is None
                       else f" for shop {shop}"))
    return ShopifyDelivery(shop, body)


ShopifyBody = Annotated[ShopifyDelivery, Depends(shopify_body)]
