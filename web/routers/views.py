"""The read-only views: `GET /healthz`, `GET /metrics` and the dashboard (`GET /`). Not
signed: they show counts, market and livestream names, never a customer (README
"Exposure")."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from coupons.shops import UnknownShopError
from services.health import health_report, healthy
from services.bootstrap import Runtime
from store.db import session_scope

from .. import charts
from ..aggregates import STREAMS_SHOWN, dashboard
from ..answers import error
from ..deps import Deps
from ..pages import render_page

router = APIRouter()


class Health(BaseModel):
    database: str
    broker: str


@router.get("/healthz", response_model=Health, tags=["operations"], summary="Database and broker answer",
            responses={200: {"description": "Both answer."},
                       503: {"model": Health, "description": "The part that does not answer says why."}})
async def healthz(deps: Deps) -> JSONResponse:
    report = await run_in_threadpool(health_report, deps.runtime)
    return JSONResponse(report, status_code=200 if healthy(report) else 503)


@router.get("/metrics", tags=["operations"], summary="Prometheus text format", response_class=Response,
            responses={200: {"description": "Read from the database at scrape time, so it covers every worker.",
                             "content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(deps: Deps) -> Response:
    payload = await run_in_threadpool(generate_latest, deps.metrics)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)


@router.get("/", response_class=HTMLResponse, tags=["dashboard"], summary="The seller's dashboard",
            responses={200: {"description": "Charts: funnels per market and stream, redemption rates, "
                             "deliveries over time, failures and suppressions."},
                       400: {"description": "`shop` names no shop of the install."}})
async def home(deps: Deps, shop: str | None = Query(None, description="Only this shop's figures (a shop of "
                                                                       "ENCORE_SHOPS_FILE); default: every shop.")
               ) -> Response:
    shops = deps.runtime.settings.shops
    if shop is not None and shop not in shops.by_name:
        try:
            shops.get(shop)
        except UnknownShopError as exc:
            return error(400, f"shop: {str(exc)[:300]}")
    return HTMLResponse(await run_in_threadpool(_dashboard_page, deps.runtime, deps.clock(), shop))


def _pct(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "–"


def _dashboard_page(runtime: Runtime, now: datetime, shop: str | None = None) -> str:
    with session_scope(runtime.database_url) as session:
        data = dashboard(session, runtime.markets, now, shop)
    for funnel in data.by_market:
        funnel.label = charts.market_label(funnel.label)
    for rate in data.by_market_rate:
        rate.label = charts.market_label(rate.label)
    for rate in data.by_offer:
        rate.label = charts.offer_label(rate.label)
    return render_page(
        "dashboard.html.j2",
        now=now.strftime("%Y-%m-%d %H:%M"), totals=data.totals, waiting=data.waiting, pct=_pct,
        legend=charts.funnel_legend(), stream_limit=STREAMS_SHOWN,
        funnel_market=charts.funnel_chart("funnel-market", data.by_market),
        funnel_stream=charts.funnel_chart("funnel-stream", data.by_stream),
        rate_offer=charts.rate_chart("rate-offer", data.by_offer),
        rate_market=charts.rate_chart("rate-market", data.by_market_rate),
        over_time=charts.time_chart("over-time", data.over_time, data.bucket),
        bucket=data.bucket, problems=charts.problems_chart("problems", data.problems),
        # a shop picker only where there is a choice (SPEC section 7)
        shops=sorted(runtime.settings.shops.by_name) if len(runtime.settings.shops.by_name) > 1 else [],
        shop=shop, brand=runtime.settings.shops.signature(shop) if shop else None)
