"""WooCommerce: Encore's codes as coupons of the shop, through the REST API v3 (SPEC rule 15).

WooCommerce has no discount shared by many codes: each code is its own coupon, created
in batches of up to 100 (`POST coupons/batch`). A coupon carries its shape's key in its
meta data, so that a retried batch recognises the coupons a crashed one created.
platforms/WOOCOMMERCE.md says which fields this relies on, and why.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import requests

from .base import DiscountShape, PlatformError, SyncOutcome

Auth = Literal["basic", "query", "oauth1"]

API_PATH = "wp-json/wc/v3/"
BATCH_LIMIT = 100  # WooCommerce's default `woocommerce_rest_batch_items_limit`
SHAPE_META_KEY = "encore_shape"
CODE_EXISTS = "woocommerce_rest_coupon_code_already_exists"
COUPON_GONE = "woocommerce_rest_shop_coupon_invalid_id"
PRODUCT_CACHE = timedelta(minutes=10)
LEFT_OUT = "the batch answer left this code out"
TRANSIENT_STATUSES = frozenset({408, 429})


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _HttpError(PlatformError):
    """A whole call failed with an HTTP answer (`status`, WooCommerce's error `code`)."""

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message, transient=status >= 500 or status in TRANSIENT_STATUSES)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class _Product:
    id: int
    type: str
    price: Decimal | None


class _Tally:
    """Each code's fate, in the caller's spelling; a code is decided once."""

    def __init__(self, codes: Sequence[str]) -> None:
        self._undecided: dict[str, None] = dict.fromkeys(codes)
        self._synced: set[str] = set()
        self._transient: dict[str, str] = {}
        self._permanent: dict[str, str] = {}

    def synced(self, code: str) -> None:
        if code in self._undecided:
            del self._undecided[code]
            self._synced.add(code)

    def failed(self, code: str, reason: str, *, transient: bool) -> None:
        if code in self._undecided:
            del self._undecided[code]
            (self._transient if transient else self._permanent)[code] = reason

    def fail_undecided(self, error: PlatformError) -> None:
        for code in list(self._undecided):
            self.failed(code, error.message, transient=error.transient)

    def outcome(self) -> SyncOutcome:
        return SyncOutcome(frozenset(self._synced), dict(self._transient), dict(self._permanent))


class WooCommercePlatform:
    """One shop's WooCommerce REST API v3. Keep one instance per shop per process: it
    caches the shop's products by SKU (for 10 minutes, so a price change is seen) and its
    currency, and keeps its connection alive.

    `domain` is the site URL (`https://glow.example`); the REST base is
    `{domain}/wp-json/wc/v3/` unless `api_url` says otherwise. `auth` follows WooCommerce:
    over HTTPS the key goes as HTTP Basic (`"query"`: as query parameters, for servers
    that drop the Authorization header); over plain HTTP WooCommerce accepts only OAuth 1.0a
    signatures (`"oauth1"`). By default the URL's scheme decides."""

    def __init__(
        self,
        domain: str,
        consumer_key: str,
        consumer_secret: str,
        *,
        api_url: str | None = None,
        auth: Auth | None = None,
        session: requests.Session | None = None,
        clock: Callable[[], datetime] = _utc_now,
        timeout: float = 60.0,
    ) -> None:
        base = api_url or f"{domain.rstrip('/')}/{API_PATH}"
        scheme = urlsplit(base).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"domain: {domain!r} needs http:// or https://")
        if not consumer_key or not consumer_secret:
            raise ValueError("consumer_key and consumer_secret: both are needed")
        self._domain = domain
        self._base = base if base.endswith("/") else base + "/"
        self._key = consumer_key
        self._secret = consumer_secret
        self._auth: Auth = auth or ("basic" if scheme == "https" else "oauth1")
        self._session = session or requests.Session()
        self._clock = clock
        self._timeout = timeout
        self._products: dict[str, tuple[datetime, _Product]] = {}
        self._currency: str | None = None

    # -- the platform ----------------------------------------------------------------

    def create_codes(self, shape: DiscountShape, codes: Sequence[str]) -> SyncOutcome:
        tally = _Tally(codes)
        if not codes:
            return tally.outcome()
        problem = _shape_problem(shape, self._clock())
        if problem:
            tally.fail_undecided(PlatformError(problem, transient=False))
            return tally.outcome()
        try:
            fields = self._coupon_fields(shape)
            for chunk in _chunks(list(dict.fromkeys(codes)), BATCH_LIMIT):
                self._create_chunk(shape, fields, chunk, tally)
        except PlatformError as error:
            tally.fail_undecided(error)
        return tally.outcome()

    def disable_codes(self, codes: Sequence[str]) -> SyncOutcome:
        """Deletes Encore's coupons for these codes (a batch delete is permanent, not the
        trash). A code the shop does not hold, or holds as a coupon that is not Encore's,
        is done: Encore never removes a seller's own coupon."""
        tally = _Tally(codes)
        try:
            ours: dict[int, str] = {}
            for code in dict.fromkeys(codes):
                coupon = self._coupon_by_code(code)
                if coupon is None or _shape_of(coupon) is None:
                    tally.synced(code)
                else:
                    ours[_int(coupon.get("id"))] = code
            for chunk in _chunks(list(ours), BATCH_LIMIT):
                answer = self._request("POST", "coupons/batch", body={"delete": chunk})
                for item in _batch_items(answer, "delete"):
                    deleted = ours.get(_int(item.get("id")))
                    if deleted is None:
                        continue
                    error = item.get("error")
                    if error is None or _error_code(error) == COUPON_GONE:
                        tally.synced(deleted)
                    else:
                        tally.failed(deleted, _item_reason(error), transient=_item_transient(error))
            tally.fail_undecided(PlatformError(LEFT_OUT, transient=True))
        except PlatformError as error:
            tally.fail_undecided(error)
        return tally.outcome()

    def check(self) -> str:
        """`GET data/currencies/current`: read-only, needs the key's read permission and a
        shop manager's capability, and names the currency Encore's refill amounts assume."""
        try:
            currency = self._fetch_currency()
        except PlatformError as error:
            raise PlatformError(f"WooCommerce at {self._domain}: {error.message}", transient=error.transient) from None
        return f"WooCommerce at {self._domain}: key accepted, store currency {currency}"

    # -- coupons ---------------------------------------------------------------------

    def _coupon_fields(self, shape: DiscountShape) -> dict[str, Any]:
        """The fields every coupon of this shape shares; only `code` differs."""
        product = self._product(shape.sku)
        common: dict[str, Any] = {
            "product_ids": [product.id],
            "usage_limit": 1,
            "limit_usage_to_x_items": 1,
            "individual_use": True,
            "date_expires": _wc_datetime(shape.expires_at),
            "description": f"Encore {shape.offer_type} on SKU {shape.sku} [{shape.key()}]",
            "meta_data": [{"key": SHAPE_META_KEY, "value": shape.key()}],
        }
        if shape.offer_type != "refill":
            assert shape.percent is not None  # _shape_problem saw to it
            return {**common, "discount_type": "percent", "amount": _decimal_text(shape.percent)}
        assert shape.price is not None
        currency = self._store_currency()
        if currency != shape.currency:
            raise PlatformError(
                f"the shop sells in {currency} and the offer is in {shape.currency}: "
                "the refill's discount cannot be worked out", transient=False)
        if product.type == "variable":
            raise PlatformError(
                f"SKU {shape.sku} is a variable product whose variations may differ in price: "
                "the refill needs a variation's own SKU", transient=False)
        if product.price is None:
            raise PlatformError(f"SKU {shape.sku} has no price in the shop", transient=False)
        discount = product.price - shape.price
        if discount <= 0:
            raise PlatformError(
                f"SKU {shape.sku} costs {product.price} in the shop, not more than the offer's "
                f"{shape.price}: there is no discount to give", transient=False)
        return {**common, "discount_type": "fixed_product", "amount": _decimal_text(discount)}

    def _create_chunk(self, shape: DiscountShape, fields: dict[str, Any], chunk: list[str], tally: _Tally) -> None:
        existing: list[str] = []
        items = self._create_batch([{**fields, "code": code} for code in chunk])
        for code, item in zip(chunk, items, strict=False):
            error = item.get("error")
            if error is None and str(item.get("code", "")).lower() == code.lower():
                tally.synced(code)
            elif error is not None and _error_code(error) == CODE_EXISTS:
                existing.append(code)
            elif error is not None:
                tally.failed(code, _item_reason(error), transient=_item_transient(error))
        for code in existing:
            self._recognise(shape, code, tally)
        for code in chunk:
            tally.failed(code, LEFT_OUT, transient=True)

    def _create_batch(self, coupons: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One batch call; halves the batch when a shop lowered WooCommerce's limit of 100."""
        try:
            return _batch_items(self._request("POST", "coupons/batch", body={"create": coupons}), "create")
        except _HttpError as error:
            if error.status != 413 or len(coupons) == 1:
                raise
        half = len(coupons) // 2
        return self._create_batch(coupons[:half]) + self._create_batch(coupons[half:])

    def _recognise(self, shape: DiscountShape, code: str, tally: _Tally) -> None:
        """A code the shop already holds is synced when it is this shape's coupon."""
        coupon = self._coupon_by_code(code)
        found = None if coupon is None else _shape_of(coupon)
        if coupon is None:
            tally.failed(code, "the shop said the code exists but does not show it", transient=True)
        elif found == shape.key():
            tally.synced(code)
        elif found is None:
            tally.failed(code, f"the code already exists in the shop as coupon {coupon.get('id')}, "
                               "which is not Encore's", transient=False)
        else:
            tally.failed(code, f"the code already exists in the shop for another Encore offer ({found})",
                         transient=False)

    def _coupon_by_code(self, code: str) -> dict[str, Any] | None:
        answer = self._request("GET", "coupons", params={"code": code})
        if not isinstance(answer, list):
            raise PlatformError("GET coupons answered something other than a list", transient=False)
        for coupon in answer:
            if isinstance(coupon, dict) and str(coupon.get("code", "")).lower() == code.lower():
                return coupon
        return None

    # -- products and currency -------------------------------------------------------

    def _product(self, sku: str) -> _Product:
        now = self._clock()
        cached = self._products.get(sku)
        if cached is not None and now - cached[0] < PRODUCT_CACHE:
            return cached[1]
        # `sku` finds variations too (WooCommerce widens the query to product_variation),
        # and matches a comma-separated list: keep only the exact SKU.
        answer = self._request("GET", "products", params={"sku": sku})
        matches = [item for item in answer if isinstance(item, dict) and item.get("sku") == sku] \
            if isinstance(answer, list) else []
        if not matches:
            raise PlatformError(f"no product or variation with SKU {sku!r} in the shop", transient=False)
        item = matches[0]
        product = _Product(id=_int(item.get("id")), type=str(item.get("type", "")), price=_decimal(item.get("price")))
        self._products[sku] = (now, product)
        return product

    def _store_currency(self) -> str:
        return self._currency or self._fetch_currency()

    def _fetch_currency(self) -> str:
        answer = self._request("GET", "data/currencies/current")
        code = answer.get("code") if isinstance(answer, dict) else None
        if not isinstance(code, str) or not code:
            raise PlatformError("GET data/currencies/current named no currency", transient=False)
        self._currency = code
        return code

    # -- HTTP ------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                 body: dict[str, Any] | None = None) -> Any:
        url = self._base + path
        query = dict(params or {})
        headers = {"Accept": "application/json", "User-Agent": "Encore (+WooCommerce REST API v3)"}
        if self._auth == "basic":
            token = base64.b64encode(f"{self._key}:{self._secret}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        elif self._auth == "query":
            query.update(consumer_key=self._key, consumer_secret=self._secret)
        else:
            query.update(self._oauth_parameters(method, url, query))
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        what = f"{method} {path}"
        try:
            response = self._session.request(method, url, params=_query_string(query), data=data,
                                             headers=headers, timeout=self._timeout)
        except requests.Timeout:
            raise PlatformError(f"{what}: no answer within {self._timeout:g} s", transient=True) from None
        except requests.exceptions.SSLError as error:  # a certificate problem does not mend by waiting
            raise PlatformError(f"{what}: TLS failed ({error})", transient=False) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as error:
            raise PlatformError(f"{what}: connection failed ({error})", transient=True) from None
        except requests.RequestException as error:
            raise PlatformError(f"{what}: {error}", transient=False) from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code >= 300:
            raise self._http_error(what, response.status_code, answer)
        if answer is None:
            raise PlatformError(
                f"{what}: answered {response.status_code} with something other than JSON "
                f"({response.headers.get('Content-Type', 'no content type')}): is {self._domain} a WordPress "
                "site with WooCommerce active and permalinks other than Plain?", transient=False)
        return answer

    def _http_error(self, what: str, status: int, answer: Any) -> _HttpError:
        code = str(answer.get("code", "")) if isinstance(answer, dict) else ""
        message = str(answer.get("message", "")) if isinstance(answer, dict) else ""
        text = f"{what}: HTTP {status}" + (f" {code}: {message}" if code or message else "")
        if status == 401 and self._auth == "basic":
            text += " (if the key is right, the server may drop the Authorization header: use query-string auth)"
        elif status in (401, 403):
            text += " (the REST API key was refused or lacks read/write permission)"
        elif status == 404 and code == "rest_no_route":
            text += f" (no WooCommerce REST API v3 at {self._base}: is WooCommerce active?)"
        return _HttpError(text, status=status, code=code)

    def _oauth_parameters(self, method: str, url: str, query: dict[str, str]) -> dict[str, str]:
        """OAuth 1.0a one-legged, as WooCommerce checks it over plain HTTP: every query
        parameter, sorted and encoded twice (RFC 3986), signed with `secret&`."""
        oauth = {
            "oauth_consumer_key": self._key,
            "oauth_nonce": secrets.token_hex(16),
            "oauth_signature_method": "HMAC-SHA256",
            "oauth_timestamp": str(int(self._clock().timestamp())),
        }
        signed = {**query, **oauth}
        pairs = "%26".join(_rfc3986(f"{_rfc3986(key)}={_rfc3986(signed[key])}") for key in sorted(signed))
        text = f"{method.upper()}&{_rfc3986(url)}&{pairs}"
        digest = hmac.new(f"{self._secret}&".encode(), text.encode(), hashlib.sha256).digest()
        return {**oauth, "oauth_signature": base64.b64encode(digest).decode()}


# -- pure helpers ------------------------------------------------------------------------


def _shape_problem(shape: DiscountShape, now: datetime) -> str | None:
    """Why a shape cannot become working coupons, before asking the shop anything."""
    if shape.expires_at.tzinfo is None:
        return "expires_at: needs a time zone"
    if shape.expires_at <= now:
        return f"the offer expired at {shape.expires_at.isoformat()}, before its code reached the shop"
    if shape.offer_type == "refill":
        if shape.price is None or shape.price <= 0:
            return "price: a refill needs the price the customer pays, above 0"
    elif shape.offer_type in ("percent_off", "second_half_price"):
        if shape.percent is None or not 0 < shape.percent <= 100:
            return "percent: needs a percentage above 0 and at most 100"
    else:
        return f"offer_type: {shape.offer_type!r} is not an offer Encore knows"
    return None


def _wc_datetime(when: datetime) -> str:
    """ISO 8601 with an explicit offset, whole seconds: the one form WooCommerce reads as
    that instant whatever the site's time zone (down to the second, never later)."""
    return when.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _decimal_text(value: Decimal) -> str:
    return format(value, "f")


def _decimal(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _shape_of(coupon: dict[str, Any]) -> str | None:
    """The shape key Encore wrote into a coupon's meta data, or None for a coupon not Encore's."""
    for meta in coupon.get("meta_data") or []:
        if isinstance(meta, dict) and meta.get("key") == SHAPE_META_KEY:
            return str(meta.get("value"))
    return None


def _batch_items(answer: Any, action: str) -> list[dict[str, Any]]:
    items = answer.get(action) if isinstance(answer, dict) else None
    if not isinstance(items, list):
        raise PlatformError(f"POST coupons/batch answered without a {action!r} list", transient=False)
    return [item if isinstance(item, dict) else {} for item in items]


def _error_code(error: Any) -> str:
    return str(error.get("code", "")) if isinstance(error, dict) else ""


def _item_reason(error: Any) -> str:
    """WooCommerce's own words for a refused item: `code: message`."""
    if not isinstance(error, dict):
        return f"refused: {error!r}"
    return f"{error.get('code', 'error')}: {error.get('message', '')}".rstrip(": ")


def _item_transient(error: Any) -> bool:
    data = error.get("data") if isinstance(error, dict) else None
    status = _int(data.get("status")) if isinstance(data, dict) else 0
    return status >= 500 or status in TRANSIENT_STATUSES


def _chunks(values: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _rfc3986(text: str) -> str:
    """PHP's rawurlencode: everything but letters, digits and -._~ is %-encoded."""
    return quote(text, safe="-._~")


def _query_string(query: dict[str, str]) -> str:
    return "&".join(f"{_rfc3986(key)}={_rfc3986(value)}" for key, value in query.items())
