"""`POST /webhooks/shopify/orders-paid`: Shopify's `orders/paid` webhook (SPEC section 6),
verified with Shopify's HMAC (`web.signing.ShopifyBody`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from coupons.shopify_orders import TOPIC
from services.shopify_webhook import take_order_paid

from ..answers import BODY_ERRORS, ErrorBody, EventsResult, error, json_body
from ..deps import Deps
from ..signing import ShopifyBody

router = APIRouter(tags=["shopify"])


class ShopifyResult(EventsResult):
    ignored: str | None = Field(None, description="Why the order makes no coupon (a test order, a cancelled "
                                "order, no paid line); nothing was stored.")


_HEADERS = [
    {"name": "X-Shopify-Hmac-Sha256", "in": "header", "required": True, "schema": {"type": "string"}},
    {"name": "X-Shopify-Topic", "in": "header", "required": True, "schema": {"type": "string", "enum": [TOPIC]}},
    {"name": "X-Shopify-Shop-Domain", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "With ENCORE_SHOPS_FILE: picks the shop (its myshopify domain) and so the secret to verify with."},
    {"name": "X-Shopify-Webhook-Id", "in": "header", "required": False, "schema": {"type": "string"}}]
_ORDER_SCHEMA = {"type": "object", "properties": {
    "id": {"type": "integer"}, "currency": {"type": "string"},
    "processed_at": {"type": "string"}, "test": {"type": "boolean"},
    "cancelled_at": {"type": ["string", "null"]}, "email": {"type": ["string", "null"]},
    "customer": {"type": ["object", "null"]},
    "line_items": {"type": "array", "items": {"type": "object"}},
    "discount_codes": {"type": "array", "items": {"type": "object"}}}}


@router.post("/webhooks/shopify/orders-paid", response_model=ShopifyResult,
             summary="Shopify's orders/paid webhook",
             description="Verified with `X-Shopify-Hmac-Sha256` (base64 HMAC-SHA256 of the body, key "
                         "ENCORE_SHOPIFY_SECRET; with a shops file, the secret of the shop `X-Shopify-Shop-Domain` "
                         "names, whose order it becomes); only the topic `orders/paid` is taken; idempotent on "
                         "`X-Shopify-Webhook-Id` and on the order. Mapped to `order.paid`; an Encore code among the "
                         "order's `discount_codes` redeems its coupon. Test orders, cancelled orders and orders "
                         "with no paid line are acknowledged and make no coupon; free lines are left out; a guest "
                         "checkout is the customer `shopify:guest:<first 16 hex digits of SHA-256(lowercased "
                         "email)>`.",
             responses={200: {"description": "Stored, a repeat of a webhook already stored, or ignored "
                                             "(`ignored` says why)."},
                        400: {"model": ErrorBody, "description": "A topic other than orders/paid (nothing "
                              "stored), or an order that cannot be mapped (the error names the field; kept as one "
                              "dead letter however often Shopify retries it)."},
                        401: {"model": ErrorBody, "description": "Missing or wrong HMAC, no "
                              "ENCORE_SHOPIFY_SECRET set, or (with a shops file) a domain of no Shopify shop or a "
                              "shop whose secret is not set; the body says which. Nothing was stored."},
                        408: BODY_ERRORS[408], 413: BODY_ERRORS[413]},
             openapi_extra={"parameters": _HEADERS, **json_body(_ORDER_SCHEMA, "The order, exactly as Shopify sends it.")})
async def shopify_orders_paid(request: Request, body: ShopifyBody, deps: Deps) -> JSONResponse:
    topic = (request.headers.get("x-shopify-topic") or "").strip()
    if topic != TOPIC:  # orders/create and orders/updated come before or without payment
        return error(400, f"X-Shopify-Topic: only {TOPIC} is taken here, got {topic!r}; subscribe this address to "
                          "the Order payment event only")
    webhook_id = (request.headers.get("x-shopify-webhook-id") or "").strip() or None
    taken = await run_in_threadpool(take_order_paid, deps.runtime, body.body, webhook_id, body.shop)
    if taken.outcome == "rejected":
        return error(400, taken.detail)
    if taken.outcome == "ignored":
        return JSONResponse({"accepted": [], "rejected": [], "ignored": taken.detail}, status_code=200)
    return JSONResponse({"accepted": [taken.detail], "rejected": []}, status_code=200)
