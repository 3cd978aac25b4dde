"""`GET`/`POST /unsubscribe/{token}`: the link in every message (SPEC rule 6). Not signed
with the webhook secret: the token itself is signed and names the customer and channel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from coupons.messages import resolve_language, text_direction, translations
from services.unsubscribe import UnsubscribeLink, read_unsubscribe_link, unsubscribe_by_link

from ..answers import BODY_ERRORS
from ..deps import Deps
from ..pages import render_page
from ..signing import RawBody

router = APIRouter(tags=["unsubscribe"])

_INVALID: dict[int | str, dict[str, Any]] = {404: {"description": "The link is not valid (altered or forged).", "content": {"text/html": {}}}}


@router.get("/unsubscribe/{token}", response_class=HTMLResponse,
            summary="Confirmation page, in the customer's language",
            responses={200: {"description": "A page with a button that POSTs to the same URL."}, **_INVALID})
async def unsubscribe_page(token: str, request: Request, deps: Deps) -> HTMLResponse:
    link = await run_in_threadpool(read_unsubscribe_link, deps.runtime, token)
    return _page(link, request, done=False)


@router.post("/unsubscribe/{token}", response_class=HTMLResponse,
             summary="One-click unsubscribe (RFC 8058)",
             description="Not signed with the webhook secret: the token itself is signed and names the customer "
                         "and the channel. Acts as `customer.opted_out` for that channel at once, also for "
                         "deliveries already scheduled.",
             responses={200: {"description": "Unsubscribed."}, 408: {"description": BODY_ERRORS[408]["description"]},
                        413: {"description": "Body larger than 1 MiB."}, **_INVALID},
             openapi_extra={"requestBody": {"required": False, "content": {
                 "application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": {
                     "List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}}}}}}})
async def unsubscribe(token: str, request: Request, _body: RawBody, deps: Deps) -> HTMLResponse:
    # RFC 8058's body is "List-Unsubscribe=One-Click": the token is what counts, but the body must arrive
    link = await run_in_threadpool(unsubscribe_by_link, deps.runtime, token, deps.clock())
    return _page(link, request, done=True)


def _page(link: UnsubscribeLink | None, request: Request, *, done: bool) -> HTMLResponse:
    """The page in the customer's language, else the browser's (Accept-Language)."""
    language = link.language if link is not None and link.language else _browser_language(request)
    t = translations(language)
    if link is None:
        return HTMLResponse(_render(t, language, t["unsubscribe_invalid"], show_button=False, brand=None),
                            status_code=404)
    text = t["unsubscribe_done" if done else "unsubscribe_question"].format(channel=link.channel)
    return HTMLResponse(_render(t, language, text, show_button=not done, brand=link.brand))


def _browser_language(request: Request) -> str:
    accepted = request.headers.get("accept-language", "").split(",")[0].split(";")[0].strip()
    return resolve_language(accepted or None, "en")[0]


def _render(t: dict[str, str], language: str, text: str, *, show_button: bool, brand: str | None) -> str:
    """`brand`: the shop the link's customer belongs to, which signs the page (none for a
    link that is not valid: it names no shop)."""
    return render_page("unsubscribe.html.j2", lang=language, direction=text_direction(language),
                       title=t["unsubscribe_title"], text=text, show_button=show_button, button=t["unsubscribe_button"],
                       brand=brand)
