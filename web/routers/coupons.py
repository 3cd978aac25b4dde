"""`POST /coupons/{code}/redeem`: a shop's checkout or till redeems a code (rule 13)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from coupons.codes import same_code
from coupons.events import decode_line, load_json
from services.redemption import ALREADY_REDEEMED, EXPIRED, REDEEMED, UNKNOWN, VOID, redeem_alone

from ..answers import BODY_ERRORS, ErrorBody, Refused, json_body
from ..deps import Deps
from ..signing import SIGNED, SignedBody

router = APIRouter(tags=["coupons"])


class RedeemRequest(BaseModel):
    code: str = Field(min_length=1, description="The code being redeemed, the same as in the path (any case, "
                      "with or without dashes). The signature covers the body only, so the code must be in it: a "
                      "captured request then redeems nothing else.")
    order_id: str = Field(min_length=1, max_length=256, description="The order the code was used on.")


class RedemptionResult(BaseModel):
    status: str = Field(description="redeemed | already_redeemed | expired | void | unknown")
    code: str | None = Field(description="The code as Encore stores it (upper case), when known.")
    reason: str


ANSWERS = {REDEEMED: (200, "redeemed"), ALREADY_REDEEMED: (409, "already redeemed"),
           EXPIRED: (410, "expired"), VOID: (410, "void: every order behind it was refunded after it was sent"),
           UNKNOWN: (404, "unknown code")}
"""Each redemption status's HTTP status and reason."""


@router.post("/coupons/{code}/redeem", response_model=RedemptionResult,
             summary="Redeem a coupon code (rule 13)",
             description="A code redeems once; of concurrent redemptions exactly one succeeds. Case-insensitive. "
                         "The signed body names the code too, and must name the one in the path.",
             responses={200: {"description": "Redeemed now."},
                        400: {"model": ErrorBody, "description": "The body is not `{\"code\": \"...\", "
                              "\"order_id\": \"...\"}` with the code of the path; nothing changed."},
                        404: {"model": RedemptionResult, "description": "Unknown code."},
                        409: {"model": RedemptionResult, "description": "Already redeemed."},
                        410: {"model": RedemptionResult, "description": "Expired, or void (refunded)."},
                        **BODY_ERRORS},
             openapi_extra={**SIGNED, **json_body(RedeemRequest.model_json_schema(),
                                                  "The code (the same as in the path) and the order it was used on.")})
async def redeem_coupon(code: str, body: SignedBody, deps: Deps) -> JSONResponse:
    order_id = _order_id(body, code)
    result = await run_in_threadpool(redeem_alone, deps.runtime.database_url, code, order_id, deps.clock())
    status, reason = ANSWERS[result.status]
    return JSONResponse({"status": result.status, "code": result.code, "reason": reason}, status_code=status)


def _order_id(body: bytes, code: str) -> str:
    """The order id of a body that names `code`, the path's (400 otherwise)."""
    try:
        decoded = load_json(decode_line(body))
    except ValueError as exc:
        raise Refused(400, str(exc)) from None
    if not isinstance(decoded, dict):
        raise Refused(400, 'body: must be an object {"code": "...", "order_id": "..."}')
    signed_code = decoded.get("code")
    if not isinstance(signed_code, str) or not signed_code.strip():
        raise Refused(400, "code: required, the code being redeemed (the same as in the path)")
    if not same_code(signed_code, code):
        raise Refused(400, "code: must be the code in the path (the signature covers the body, not the path)")
    order_id = decoded.get("order_id")
    if not isinstance(order_id, str) or not order_id.strip() or len(order_id) > 256:
        raise Refused(400, "order_id: required, a non-empty string (at most 256 characters)")
    return order_id
