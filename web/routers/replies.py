"""Rule 18's webhooks: `POST /webhooks/sms/inbound` (Twilio's inbound message webhook,
signed with X-Twilio-Signature) and `POST /webhooks/email/feedback` (bounces and
complaints, signed as every request: X-Encore-Signature)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from coupons.feedback import FeedbackError
from coupons.replies import SIGNATURE_HEADER as TWILIO_SIGNATURE, parse_twilio_form
from services.email_feedback import record_feedback
from services.sms_replies import BadTwilioSignature, TwilioNotConfigured, handle_reply, verify_inbound

from ..answers import BODY_ERRORS, Refused, json_body
from ..deps import Deps
from ..signing import SIGNED, RawBody, SignedBody

router = APIRouter(tags=["replies and feedback"])

TWIML = "text/xml; charset=utf-8"

_TWILIO_FORM = {"requestBody": {"required": True, "description": "Twilio's inbound message parameters (more are "
                                "sent; all of them are signed).",
                                "content": {"application/x-www-form-urlencoded": {"schema": {
                                    "type": "object", "required": ["From"], "properties": {
                                        "From": {"type": "string", "description": "the customer's number, E.164"},
                                        "To": {"type": "string", "description": "the seller's number"},
                                        "Body": {"type": "string", "description": "the reply's text"},
                                        "MessageSid": {"type": "string"}}}}}},
                "parameters": [{"name": TWILIO_SIGNATURE, "in": "header", "required": True,
                                "description": "Twilio's signature: base64 HMAC-SHA1 of the URL and the sorted form "
                                               "parameters, key ENCORE_TWILIO_AUTH_TOKEN",
                                "schema": {"type": "string"}}]}
_NOTICE = {"type": "object", "required": ["type", "email", "occurred_at"], "properties": {
    "type": {"type": "string", "enum": ["bounce", "complaint"]}, "email": {"type": "string"},
    "permanent": {"type": "boolean", "description": "required for a bounce"},
    "occurred_at": {"type": "string", "format": "date-time"}}}


@router.post("/webhooks/sms/inbound", response_class=Response,
             summary="Twilio's inbound message webhook: STOP, START, HELP (rule 18)",
             description="Verified with X-Twilio-Signature (HMAC-SHA1 of the URL Twilio called and the sorted "
                         "form parameters, key ENCORE_TWILIO_AUTH_TOKEN; the URL is ENCORE_PUBLIC_URL + the path "
                         "when set). Answers TwiML: the help line for HELP, an empty `<Response/>` otherwise.",
             responses={200: {"description": "TwiML", "content": {"text/xml": {}}},
                        400: {"description": "The sender (From) is missing."},
                        401: {"description": "Missing or wrong X-Twilio-Signature, or ENCORE_TWILIO_AUTH_TOKEN "
                                             "not set; nothing changed."},
                        408: BODY_ERRORS[408], 413: BODY_ERRORS[413]},
             openapi_extra=_TWILIO_FORM)
async def sms_inbound(request: Request, body: RawBody, deps: Deps) -> Response:
    try:
        params = parse_twilio_form(body)
    except ValueError:
        raise Refused(400, "body: must be a UTF-8 form (application/x-www-form-urlencoded)") from None
    try:
        verify_inbound(deps.runtime, _called_urls(request, deps), params, request.headers.get(TWILIO_SIGNATURE))
    except TwilioNotConfigured as error:  # SPEC section 3: no token, the endpoint answers 401
        raise Refused(401, str(error)) from None
    except BadTwilioSignature as error:
        raise Refused(401, str(error)) from None
    try:
        outcome = await run_in_threadpool(handle_reply, deps.runtime, params, deps.clock())
    except ValueError as error:
        raise Refused(400, str(error)) from None
    return Response(outcome.twiml, media_type=TWIML)


def _called_urls(request: Request, deps: Deps) -> list[str]:
    """The URLs Twilio may have called, as Twilio signs them: ENCORE_PUBLIC_URL + path +
    query when set (behind a proxy the request's own URL is not the one Twilio saw), and
    the request's own (a number whose webhook points straight at `encore serve`)."""
    own = str(request.url)
    public = deps.runtime.settings.public_url
    if not public:
        return [own]
    query = f"?{request.url.query}" if request.url.query else ""
    return [f"{public}{request.url.path}{query}", own]


@router.post("/webhooks/email/feedback",
             summary="Bounces and complaints (rule 18)",
             description="One notice or a JSON array of them: `{\"type\": \"bounce\" | \"complaint\", \"email\": ..., "
                         "\"permanent\": true|false, \"occurred_at\": ...}`. A complaint or a permanent bounce "
                         "suppresses the address on email from then on (reason `email_suppressed`); a transient "
                         "bounce counts against the delivery it answers like a transient failure.",
             responses={200: {"description": "`{\"suppressed\": n, \"transient\": n}`"},
                        400: {"description": "A notice is not valid; the error names the field. Nothing stored."},
                        **BODY_ERRORS},
             openapi_extra={**SIGNED, **json_body({"oneOf": [_NOTICE, {"type": "array", "items": _NOTICE}]},
                                                  "One notice or an array of them.")})
async def email_feedback(body: SignedBody, deps: Deps) -> JSONResponse:
    try:
        payload = json.loads(body)
    except ValueError:
        raise Refused(400, "body: must be JSON (a notice or an array of notices)") from None
    try:
        result = await run_in_threadpool(record_feedback, deps.runtime, payload, deps.clock())
    except FeedbackError as error:
        raise Refused(400, str(error)) from None
    return JSONResponse(result)
