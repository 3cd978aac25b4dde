"""Reading and verifying request bodies: a size limit and a deadline enforced while
reading, and signatures compared in constant time over the exact bytes received."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

from starlette.requests import Request

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
