"""`POST /events`: one event or a JSON array of events, signed (SPEC section 6)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from services.emit import take_events_body

from ..answers import BODY_ERRORS, EventsResult, json_body
from ..deps import Deps
from ..signing import SIGNED, SignedBody

router = APIRouter(tags=["events"])

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


@router.post("/events", status_code=202, response_model=EventsResult,
             summary="Send one event or a JSON array of events",
             responses={202: {"description": "Every event was stored."},
                        400: {"model": EventsResult, "description": "Some events were rejected (the others are "
                              "stored), or the body is not JSON."}, **BODY_ERRORS},
             openapi_extra={**SIGNED, **json_body({"oneOf": [_EVENT_SCHEMA, {"type": "array", "items": _EVENT_SCHEMA}]},
                                                  "One event (SPEC section 1) or a JSON array of them.")})
async def post_events(body: SignedBody, deps: Deps) -> JSONResponse:
    outcome = await run_in_threadpool(take_events_body, deps.runtime, body)
    if outcome.refused is not None:
        return JSONResponse({"accepted": [], "rejected": [{"index": 0, "error": outcome.refused}],
                             "error": outcome.refused}, status_code=400)
    rejected = [{"index": index, "error": reason} for index, reason in outcome.rejected]
    return JSONResponse({"accepted": outcome.accepted, "rejected": rejected}, status_code=400 if rejected else 202)
