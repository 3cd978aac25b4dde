"""The shapes of the service's answers that more than one router gives, and `Refused`:
raised anywhere in a request (a dependency, a parser), it is answered
`{"error": "..."}` with its status, which is every error answer's shape."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field


class Refused(Exception):
    """A request answered with an error: `status`, `{"error": message}` and any `headers`."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def answer_refused(_request: Request, exc: Exception) -> JSONResponse:
    """The app's handler for `Refused`."""
    assert isinstance(exc, Refused)
    return error(exc.status, exc.message, exc.headers)


class ErrorBody(BaseModel):
    error: str


class Rejection(BaseModel):
    index: int = Field(description="Position of the event in the request (0 for a single object).")
    error: str = Field(description="What is wrong, naming the field: `data.items[0].unit_price: must be > 0`.")


class EventsResult(BaseModel):
    accepted: list[str] = Field(description="Ids of the events stored (a repeated id counts as accepted).")
    rejected: list[Rejection]
    error: str | None = Field(None, description="Set when the body as a whole was rejected: a single event that "
                              "is not valid, or a body that is neither an event nor a JSON array.")


BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong signature; nothing was stored."},
    408: {"model": ErrorBody, "description": "The body did not arrive within ENCORE_BODY_TIMEOUT_SECONDS of the "
          "headers; nothing was stored and the connection is closed."},
    413: {"model": ErrorBody, "description": "Body larger than 1 MiB."}}
"""The OpenAPI answers of a signed route that reads its body (`web.signing.signed_body`)."""


def json_body(schema: dict, description: str) -> dict[str, Any]:
    """An `openapi_extra` request body: routes read their bodies themselves (`web.signing`),
    so FastAPI cannot describe them."""
    return {"requestBody": {"required": True, "description": description,
                            "content": {"application/json": {"schema": schema}}}}
