"""One-click unsubscribe tokens (SPEC rule 6 and section 6).

A token names a customer and a channel and carries an HMAC over both, so it can
be neither guessed nor altered: `<base64url(json [customer, channel])>.<base64url(mac)>`.
The key is derived from ENCORE_WEBHOOK_SECRET (workers mint tokens, `encore serve`
checks them) under its own label, so a token is never a valid request signature.
Tokens do not expire: an unsubscribe link in an old email must still work.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from functools import lru_cache

from .errors import EncoreError
from .model import CHANNELS

_KEY_LABEL = b"encore unsubscribe v1"
_MAC_BYTES = 16  # 128 bits: far beyond guessing, and short enough for an SMS link


@dataclass(frozen=True)
class Unsubscribe:
    customer_id: str
    channel: str


class BadToken(EncoreError, ValueError):
    """The token was not minted by this Encore (forged, altered or truncated)."""


@lru_cache(maxsize=8)
def _key(secret: str) -> bytes:
    """Derived once per secret: every message of a batch mints a token."""
    return hmac.new(secret.encode("utf-8"), _KEY_LABEL, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint_token(secret: str, customer_id: str, channel: str) -> str:
    payload = _b64(json.dumps([customer_id, channel], separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    mac = hmac.new(_key(secret), payload.encode("ascii"), hashlib.sha256).digest()[:_MAC_BYTES]
    return f"{payload}.{_b64(mac)}"


def read_token(secret: str, token: str) -> Unsubscribe:
    """The customer and channel a token names; raises BadToken for anything else."""
    payload, dot, mac_text = token.partition(".")
    if not dot or not payload or not mac_text or not (payload + mac_text).isascii():
        raise BadToken("malformed token")
    expected = hmac.new(_key(secret), payload.encode("ascii"), hashlib.sha256).digest()[:_MAC_BYTES]
    try:
        given = _unb64(mac_text)
    except (binascii.Error, ValueError):
        raise BadToken("malformed token") from None
    if not hmac.compare_digest(given, expected):
        raise BadToken("signature does not match")
    try:
        customer_id, channel = json.loads(_unb64(payload))
    except (binascii.Error, ValueError, TypeError):
        raise BadToken("malformed token") from None
    if not isinstance(customer_id, str) or channel not in CHANNELS:
        raise BadToken("malformed token")
    return Unsubscribe(customer_id, channel)


def unsubscribe_url(public_url: str | None, secret: str | None, customer_id: str, channel: str) -> str | None:
    """The link a message carries, or None when ENCORE_PUBLIC_URL is not set."""
    if not public_url or not secret:
        return None
    return f"{public_url.rstrip('/')}/unsubscribe/{mint_token(secret, customer_id, channel)}"
