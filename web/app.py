"""The HTTP service (SPEC section 6) as a FastAPI app over the shared services.

Request bodies are read by hand (never parsed by the framework first) for two
reasons: signatures are over the exact bytes received, and the 1 MiB limit must
stop reading at the limit. Everything that touches the database runs in
Starlette's thread pool, through the same session scope as the command line.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import UTC, datetime
from functools import cache
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, PackageLoader
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from coupons.codes import same_code
from coupons.events import EventError, decode_line, load_json, split_array, validate_event
from coupons.messages import resolve_language, translations
from coupons.unsubscribe import BadToken, read_token
from services.emit import emit_lines
from services.failures import store_dead_letter, store_dead_letter_once
from services.intake import apply_events, store_events
from services.redemption import ALREADY_REDEEMED, EXPIRED, REDEEMED, UNKNOWN, VOID, redeem
from services.bootstrap import Runtime
from services.ports import APPLY_EVENTS
from store.db import engine_for, session_scope
from store.models import Customer

from . import charts
from .aggregates import STREAMS_SHOWN, dashboard
from .metrics import make_registry
from .requests import MAX_BODY_BYTES, SIGNATURE_HEADER, BodyTimeout, BodyTooLarge, read_body, signature_ok
from .shopify import TOPIC as SHOPIFY_TOPIC
from .shopify import Ignored, order_paid_event, shopify_signature_ok

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------ API shapes


class Rejection(BaseModel):
    index: int = Field(description="Position of the event in the request (0 for a single object).")
    error: str = Field(description="What is wrong, naming the field: `data.items[0].unit_price: must be > 0`.")


class EventsResult(BaseModel):
    accepted: list[str] = Field(description="Ids of the events stored (a repeated id counts as accepted).")
    rejected: list[Rejection]
    error: str | None = Field(None, description="Set when the body as a whole was rejected: a single event that "
                              "is not valid, or a body that is neither an event nor a JSON array.")


class ErrorBody(BaseModel):
    error: str


class ShopifyResult(EventsResult):
    ignored: str | None = Field(None, description="Why the order makes no coupon (a test order, a cancelled "
                                "order, no paid line); nothing was stored.")


class RedeemRequest(BaseModel):
    code: str = Field(min_length=1, description="The code being redeemed, the same as in the path (any case, "
                      "with or without dashes). The signature covers the body only, so the code must be in it: a "
                      "captured request then redeems nothing else.")
    order_id: str = Field(min_length=1, max_length=256, description="The order the code was used on.")


class RedemptionResult(BaseModel):
    status: str = Field(description="redeemed | already_redeemed | expired | void | unknown")
    code: str | None = Field(description="The code as Encore stores it (upper case), when known.")
    reason: str


class Health(BaseModel):
    database: str
    broker: str


_EVENT_SCHEMA = {
    "type": "object",
    "required": ["id", "type", "occurred_at", "data"],
    "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": 128},
        "type": {"type": "string", "enum": ["order.paid", "stream.ended", "order.refunded", "customer.opted_out",
                                            "coupon.redeemed"]},
        "occurred_at": {"type": "string", "format": "date-time"},
        "data": {"type": "object"},
    },
}
_SIGNED = {"parameters": [{"name": SIGNATURE_HEADER, "in": "header", "required": True,
                           "description": "`sha256=` + hex HMAC-SHA256 of the raw body, key ENCORE_WEBHOOK_SECRET",
                           "schema": {"type": "string"}}]}
_ERRORS = {401: {"model": ErrorBody, "description": "Missing or wrong signature; nothing was stored."},
           408: {"model": ErrorBody, "description": "The body did not arrive within ENCORE_BODY_TIMEOUT_SECONDS "
                 "of the headers; nothing was stored and the connection is closed."},
           413: {"model": ErrorBody, "description": "Body larger than 1 MiB."}}


def _json_body(schema: dict, description: str) -> dict:
    return {"requestBody": {"required": True, "description": description,
                            "content": {"application/json": {"schema": schema}}}}


# --------------------------------------------------------------------------- helpers


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _read(request: Request, timeout: float) -> bytes | Response:
    """The raw body, or the answer when it is over 1 MiB (413) or not all there within
    `timeout` seconds (408, and the connection is closed: uvicorn closes it after a
    response that says so)."""
    try:
        return await read_body(request, timeout=timeout)
    except BodyTooLarge:
        return _error(413, f"body: larger than {MAX_BODY_BYTES // 1024 // 1024} MiB")
    except BodyTimeout:
        return JSONResponse({"error": f"body: not received within {timeout:g} s"}, status_code=408,
                            headers={"Connection": "close"})


def _decode(body: bytes) -> Any:
    """The body as JSON, decoded exactly as `encore emit` decodes a line (strict UTF-8,
    then JSON); an EventError (a ValueError) names the problem."""
    return load_json(decode_line(body))


def _body_rejected(message: str) -> JSONResponse:
    return JSONResponse({"accepted": [], "rejected": [{"index": 0, "error": message}], "error": message},
                        status_code=400)


@cache
def _templates() -> Environment:
    return Environment(loader=PackageLoader("web", "templates"), autoescape=True, auto_reload=False)


# ------------------------------------------------------------------------------- app


def create_app(runtime: Runtime) -> FastAPI:
    """The service for `runtime`: its clock, and its doorbell for intake (Celery in `serve`)."""
    settings = runtime.settings
    if not settings.webhook_secret:
        from config.settings import SettingsError

        raise SettingsError("ENCORE_WEBHOOK_SECRET: not set; `encore serve` needs it to verify signed requests")
    secret = settings.webhook_secret
    clock = runtime.clock
    database_url = runtime.database_url
    registry = make_registry(database_url, clock)
    app = FastAPI(
        title="Encore",
        version="1.0",
        description="Shop events in, repurchase coupons out (SPEC section 6). Every request that changes "
                    "something is signed: `X-Encore-Signature: sha256=<hex HMAC-SHA256 of the raw body>`, "
                    "key ENCORE_WEBHOOK_SECRET.",
        docs_url=None,
        redoc_url=None,
    )

    def accept(elements: list[bytes]) -> tuple[list[str], list[dict]]:
        """Each element's bytes through the path of one `encore emit` line: validated, stored
        as sent (then enqueued), or dead-lettered as sent with the same reason."""
        accepted: list[str] = []
        rejected: list[dict] = []
        emit_lines(runtime, (("http", index, element) for index, element in enumerate(elements)),
                   lambda _source, index, reason: rejected.append({"index": index, "error": reason}),
                   on_accept=lambda _source, _index, event_id: accepted.append(event_id), bom_on_first_line=False)
        return accepted, rejected

    async def signed_body(request: Request) -> bytes | Response:
        """The raw body when it is within the size limit and deadline and signed with the
        webhook secret; otherwise the 413, 408 or 401 answer to give (nothing has been stored)."""
        body = await _read(request, settings.body_timeout_seconds)
        if isinstance(body, Response):
            return body
        if not signature_ok(secret, body, request.headers.get(SIGNATURE_HEADER)):
            return _error(401, f"{SIGNATURE_HEADER}: missing or wrong signature")
        return body

    # ------------------------------------------------------------------ POST /events

    @app.post("/events", status_code=202, response_model=EventsResult, tags=["events"],
              summary="Send one event or a JSON array of events",
              responses={202: {"description": "Every event was stored."},
                         400: {"model": EventsResult, "description": "Some events were rejected (the others are "
                               "stored), or the body is not JSON."}, **_ERRORS},
              openapi_extra={**_SIGNED, **_json_body({"oneOf": [_EVENT_SCHEMA, {"type": "array",
                                                                                "items": _EVENT_SCHEMA}]},
                                                     "One event (SPEC section 1) or a JSON array of them.")})
    async def post_events(request: Request) -> Response:
        body = await signed_body(request)
        if isinstance(body, Response):
            return body
        try:  # the elements' bytes, never decoded and encoded again
            elements = split_array(body)
        except EventError as exc:  # an array whose elements cannot be told apart: kept whole
            await run_in_threadpool(_dead_letter, "http", body, str(exc))
            return _body_rejected(str(exc))
        if elements is None and not body.strip(b" \t\n\r"):
            message = "body: empty; send one event or a JSON array of events"
            await run_in_threadpool(_dead_letter, "http", body, message)
            return _body_rejected(message)
        accepted, rejected = await run_in_threadpool(accept, [body] if elements is None else elements)
        if elements is None and rejected:  # one event, not valid: the body is
            return _body_rejected(rejected[0]["error"])
        return JSONResponse({"accepted": accepted, "rejected": rejected}, status_code=400 if rejected else 202)

    # ------------------------------------------------- POST /webhooks/shopify/orders-paid

    @app.post("/webhooks/shopify/orders-paid", tags=["shopify"], response_model=ShopifyResult,
              summary="Shopify's orders/paid webhook",
              description="Verified with `X-Shopify-Hmac-Sha256` (base64 HMAC-SHA256 of the body, key "
                          "ENCORE_SHOPIFY_SECRET); only the topic `orders/paid` is taken; idempotent on "
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
                         401: {"model": ErrorBody, "description": "Missing or wrong HMAC, or no "
                               "ENCORE_SHOPIFY_SECRET set; nothing was stored."},
                         408: _ERRORS[408], 413: _ERRORS[413]},
              openapi_extra={"parameters": [
                  {"name": "X-Shopify-Hmac-Sha256", "in": "header", "required": True, "schema": {"type": "string"}},
                  {"name": "X-Shopify-Topic", "in": "header", "required": True,
                   "schema": {"type": "string", "enum": [SHOPIFY_TOPIC]}},
                  {"name": "X-Shopify-Webhook-Id", "in": "header", "required": False, "schema": {"type": "string"}}],
                  **_json_body({"type": "object", "properties": {
                      "id": {"type": "integer"}, "currency": {"type": "string"},
                      "processed_at": {"type": "string"}, "test": {"type": "boolean"},
                      "cancelled_at": {"type": ["string", "null"]}, "email": {"type": ["string", "null"]},
                      "customer": {"type": ["object", "null"]},
                      "line_items": {"type": "array", "items": {"type": "object"}},
                      "discount_codes": {"type": "array", "items": {"type": "object"}}}},
                      "The order, exactly as Shopify sends it.")})
    async def shopify_orders_paid(request: Request) -> Response:
        body = await _read(request, settings.body_timeout_seconds)
        if isinstance(body, Response):
            return body
        shopify_secret = settings.shopify_secret
        if not shopify_secret:
            return _error(401, "ENCORE_SHOPIFY_SECRET is not set: Shopify webhooks cannot be verified")
        if not shopify_signature_ok(shopify_secret, body, request.headers.get("x-shopify-hmac-sha256")):
            return _error(401, "X-Shopify-Hmac-Sha256: missing or wrong signature")
        topic = (request.headers.get("x-shopify-topic") or "").strip()
        if topic != SHOPIFY_TOPIC:  # orders/create and orders/updated come before or without payment
            return _error(400, f"X-Shopify-Topic: only {SHOPIFY_TOPIC} is taken here, got {topic!r}; subscribe "
                               "this address to the Order payment event only")
        webhook_id = (request.headers.get("x-shopify-webhook-id") or "").strip() or None
        outcome, detail = await run_in_threadpool(take_shopify_order, body, webhook_id)
        if outcome == "rejected":
            return _error(400, detail)
        if outcome == "ignored":
            log.info("shopify webhook %s: %s", webhook_id, detail)  # ids only: no customer data in logs
            return JSONResponse({"accepted": [], "rejected": [], "ignored": detail}, status_code=200)
        return JSONResponse({"accepted": [detail], "rejected": []}, status_code=200)

    def take_shopify_order(body: bytes, webhook_id: str | None) -> tuple[str, str]:
        """("accepted", event id), ("ignored", why) or ("rejected", the error naming the field).
        A rejected order is kept as a dead letter with Shopify's bytes, once per webhook:
        Shopify retries it unchanged, and each retry must not add another copy."""
        now = clock()
        try:
            mapped = order_paid_event(_decode(body), webhook_id)
            if isinstance(mapped, Ignored):
                return "ignored", mapped.reason
            event = validate_event(mapped, now)
        except ValueError as exc:  # EventError and ShopifyPayloadError are ones
            delivery = webhook_id or "body:" + hashlib.sha256(body).hexdigest()[:16]
            with session_scope(database_url) as session:
                store_dead_letter_once(session, f"shopify:{delivery}", body.decode("utf-8", "backslashreplace"),
                                       str(exc), now)
            return "rejected", str(exc)
        with session_scope(database_url) as session:
            new_ids = store_events(session, [event], now)
        if new_ids:
            try:
                runtime.doorbell.ring(APPLY_EVENTS, new_ids)
            except Exception:  # stored already: the relay enqueues it after the lease
                log.warning("enqueueing Shopify event %s failed; the relay will retry", event.id, exc_info=True)
        return "accepted", event.id

    def _dead_letter(source: str, body: bytes, reason: str) -> None:
        with session_scope(database_url) as session:
            store_dead_letter(session, source, body.decode("utf-8", "backslashreplace"), reason, clock())

    # ------------------------------------------------------- POST /coupons/{code}/redeem

    statuses = {REDEEMED: (200, "redeemed"), ALREADY_REDEEMED: (409, "already redeemed"),
                EXPIRED: (410, "expired"), VOID: (410, "void: every order behind it was refunded after it was sent"),
                UNKNOWN: (404, "unknown code")}

    @app.post("/coupons/{code}/redeem", tags=["coupons"], response_model=RedemptionResult,
              summary="Redeem a coupon code (rule 13)",
              description="A code redeems once; of concurrent redemptions exactly one succeeds. Case-insensitive. "
                          "The signed body names the code too, and must name the one in the path.",
              responses={200: {"description": "Redeemed now."},
                         400: {"model": ErrorBody, "description": "The body is not `{\"code\": \"...\", "
                               "\"order_id\": \"...\"}` with the code of the path; nothing changed."},
                         404: {"model": RedemptionResult, "description": "Unknown code."},
                         409: {"model": RedemptionResult, "description": "Already redeemed."},
                         410: {"model": RedemptionResult, "description": "Expired, or void (refunded)."},
                         **_ERRORS},
              openapi_extra={**_SIGNED, **_json_body(RedeemRequest.model_json_schema(),
                                                     "The code (the same as in the path) and the order it was used "
                                                     "on.")})
    async def redeem_coupon(code: str, request: Request) -> Response:
        body = await signed_body(request)
        if isinstance(body, Response):
            return body
        try:
            decoded = _decode(body)
        except ValueError as exc:
            return _error(400, str(exc))
        if not isinstance(decoded, dict):
            return _error(400, 'body: must be an object {"code": "...", "order_id": "..."}')
        signed_code = decoded.get("code")
        if not isinstance(signed_code, str) or not signed_code.strip():
            return _error(400, "code: required, the code being redeemed (the same as in the path)")
        if not same_code(signed_code, code):
            return _error(400, "code: must be the code in the path (the signature covers the body, not the path)")
        order_id = decoded.get("order_id")
        if not isinstance(order_id, str) or not order_id.strip() or len(order_id) > 256:
            return _error(400, "order_id: required, a non-empty string (at most 256 characters)")

        def run() -> Any:
            with session_scope(database_url) as session:
                return redeem(session, code, order_id, clock())

        result = await run_in_threadpool(run)
        status, reason = statuses[result.status]
        return JSONResponse({"status": result.status, "code": result.code, "reason": reason}, status_code=status)

    # ------------------------------------------------------------ /unsubscribe/{token}

    def _page(token: str, request: Request, *, done: bool) -> tuple[int, str]:
        try:
            target = read_token(secret, token)
        except BadToken:
            language = _language(None, request)
            t = translations(language)
            return 404, _render_page(t, language, t["unsubscribe_title"], t["unsubscribe_invalid"], False)
        with session_scope(database_url) as session:
            customer = session.get(Customer, target.customer_id)
            language = _language(customer, request)
            if done:
                _opt_out(session, target.customer_id, target.channel)
        t = translations(language)
        body = t["unsubscribe_done" if done else "unsubscribe_question"].format(channel=target.channel)
        return 200, _render_page(t, language, t["unsubscribe_title"], body, not done)

    def _language(customer: Customer | None, request: Request) -> str:
        if customer is not None and (customer.locale or customer.country):
            market = runtime.markets.for_country(customer.country or "")
            region = f"{market.language_for(customer.country)}-{customer.country}" if customer.country else "en"
            return resolve_language(customer.locale, region)[0]
        accepted = request.headers.get("accept-language", "").split(",")[0].split(";")[0].strip()
        return resolve_language(accepted or None, "en")[0]

    def _opt_out(session, customer_id: str, channel: str) -> None:
        """Acts as a `customer.opted_out` event, stored and applied now: the sender checks
        consent again before each send, so deliveries already scheduled stop too."""
        now = clock()
        event = validate_event({"id": f"unsubscribe:{uuid.uuid4().hex}", "type": "customer.opted_out",
                                "occurred_at": now.astimezone(UTC).isoformat(), "data": {"customer_id": customer_id,
                                                                      "channels": [channel]}}, now)
        apply_events(session, runtime, store_events(session, [event], now), now)

    def _render_page(t: dict, language: str, title: str, text_: str, show_button: bool) -> str:
        from coupons.messages import _direction

        return _templates().get_template("unsubscribe.html.j2").render(
            lang=language, direction=_direction(language), title=title, text=text_, show_button=show_button,
            button=t["unsubscribe_button"])

    unsubscribe_responses = {404: {"description": "The link is not valid (altered or forged).",
                                   "content": {"text/html": {}}}}

    @app.get("/unsubscribe/{token}", response_class=HTMLResponse, tags=["unsubscribe"],
             summary="Confirmation page, in the customer's language",
             responses={200: {"description": "A page with a button that POSTs to the same URL."},
                        **unsubscribe_responses})
    async def unsubscribe_page(token: str, request: Request) -> Response:
        status, page = await run_in_threadpool(_page, token, request, done=False)
        return HTMLResponse(page, status_code=status)

    @app.post("/unsubscribe/{token}", response_class=HTMLResponse, tags=["unsubscribe"],
              summary="One-click unsubscribe (RFC 8058)",
              description="Not signed with the webhook secret: the token itself is signed and names the customer "
                          "and the channel. Acts as `customer.opted_out` for that channel at once, also for "
                          "deliveries already scheduled.",
              responses={200: {"description": "Unsubscribed."}, 408: {"description": _ERRORS[408]["description"]},
                         413: {"description": "Body larger than 1 MiB."},
                         **unsubscribe_responses},
              openapi_extra={"requestBody": {"required": False, "content": {
                  "application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": {
                      "List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}}}}}}})
    async def unsubscribe(token: str, request: Request) -> Response:
        body = await _read(request, settings.body_timeout_seconds)  # RFC 8058's "List-Unsubscribe=One-Click"
        if isinstance(body, Response):  # the token is what counts, but the body must arrive
            return body
        status, page = await run_in_threadpool(_page, token, request, done=True)
        return HTMLResponse(page, status_code=status)

    # ------------------------------------------------------------------ GET /healthz

    @app.get("/healthz", response_model=Health, tags=["operations"], summary="Database and broker answer",
             responses={200: {"description": "Both answer."},
                        503: {"model": Health, "description": "The part that does not answer says why."}})
    async def healthz() -> Response:
        report = await run_in_threadpool(_health, runtime)
        ok = all(value == "ok" for value in report.values())
        return JSONResponse(report, status_code=200 if ok else 503)

    # ------------------------------------------------------------------ GET /metrics

    @app.get("/metrics", tags=["operations"], summary="Prometheus text format", response_class=Response,
             responses={200: {"description": "Read from the database at scrape time, so it covers every worker.",
                              "content": {CONTENT_TYPE_LATEST: {}}}})
    async def metrics() -> Response:
        payload = await run_in_threadpool(generate_latest, registry)
        return Response(payload, media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------------- GET /

    @app.get("/", response_class=HTMLResponse, tags=["dashboard"], summary="The seller's dashboard",
             responses={200: {"description": "Charts: funnels per market and stream, redemption rates, "
                              "deliveries over time, failures and suppressions."}})
    async def home() -> Response:
        return HTMLResponse(await run_in_threadpool(_dashboard_page, runtime, clock()))

    return app


def _health(runtime: Runtime) -> dict[str, str]:
    report = {}
    try:
        with engine_for(runtime.database_url).connect() as connection:
            connection.execute(text("SELECT 1"))
        report["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        report["database"] = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    try:
        from kombu import Connection

        with Connection(runtime.settings.broker_url, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
        report["broker"] = "ok"
    except Exception as exc:  # noqa: BLE001
        report["broker"] = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    return report


def _pct(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "–"


def _dashboard_page(runtime: Runtime, now: datetime) -> str:
    with session_scope(runtime.database_url) as session:
        data = dashboard(session, runtime.markets, now)
    for funnel in data.by_market:
        funnel.label = charts.market_label(funnel.label)
    for rate in data.by_market_rate:
        rate.label = charts.market_label(rate.label)
    for rate in data.by_offer:
        rate.label = charts.offer_label(rate.label)
    return _templates().get_template("dashboard.html.j2").render(
        now=now.strftime("%Y-%m-%d %H:%M"), totals=data.totals, waiting=data.waiting, pct=_pct, legend=charts.funnel_legend(),
        stream_limit=STREAMS_SHOWN,
        funnel_market=charts.funnel_chart("funnel-market", data.by_market),
        funnel_stream=charts.funnel_chart("funnel-stream", data.by_stream),
        rate_offer=charts.rate_chart("rate-offer", data.by_offer),
        rate_market=charts.rate_chart("rate-market", data.by_market_rate),
        over_time=charts.time_chart("over-time", data.over_time, data.bucket),
        bucket=data.bucket, problems=charts.problems_chart("problems", data.problems))


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

