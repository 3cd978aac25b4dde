"""Reading and verifying request bodies: a size limit enforced while reading, and
signatures compared in constant time over the exact bytes received."""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

MAX_BODY_BYTES = 1024 * 1024
"""SPEC section 6: 1 MiB; a larger body is answered 413 without reading the rest."""

SIGNATURE_HEADER = "X-Encore-Signature"


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, or BodyTooLarge as soon as it passes `limit` (declared or read)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise BodyTooLarge
        except ValueError:
            pass  # the server rejects a malformed Content-Length itself
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise BodyTooLarge
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
