"""A WooCommerce REST API v3 stand-in: a real HTTP server on 127.0.0.1 that answers the
calls Encore makes as WooCommerce does, refusals included, and prices a cart at its
checkout with WooCommerce's own discount arithmetic.

What it enforces, and where WooCommerce does it (woocommerce/woocommerce, plugins/woocommerce/):
- authentication (includes/class-wc-rest-authentication.php): over plain HTTP only OAuth 1.0a
  one-legged signatures in the query string (HMAC-SHA1/256 over the sorted, twice-encoded
  parameters, key `secret&`, timestamp within 15 minutes, nonce used once); HTTP Basic or
  `consumer_key`/`consumer_secret` query parameters only when the site is reached over HTTPS
  (`behind_tls=True`: a TLS proxy in front); a read-only key cannot write; no credentials
  at all fail the route's permission check (401);
- batches (includes/rest-api/Controllers/Version3/class-wc-rest-controller.php): at most 100
  create+update+delete items, else 413 `woocommerce_rest_request_entity_too_large`; each item
  answered in order, a refused one as `{"id": 0, "error": {code, message, data}}` inside a 200;
  a batch delete is always forced (no trash);
- coupons (Version2/class-wc-rest-coupons-v2-controller.php, includes/class-wc-coupon.php):
  `code` required and unique among published coupons, stored lower-cased
  (`woocommerce_rest_coupon_code_already_exists`, `woocommerce_rest_empty_coupon_code`);
  `discount_type` one of percent, fixed_cart, fixed_product (`coupon_invalid_discount_type`);
  a negative amount is refused (`coupon_invalid_amount`), a non-numeric one becomes 0;
  `date_expires` read as WC_Data::set_date_prop does (ISO 8601 with an offset is that
  instant, without one it is the site's local time, anything else the epoch), while
  `date_expires_gmt` has no setter and is ignored;
- the documented types of each field (REST API docs, coupon properties), which WooCommerce
  checks for a single `POST /coupons` but not inside a batch: the stand-in checks them in
  batches too (`rest_invalid_param`), so the client keeps to the documented types;
- products by SKU find variations too (Version3/class-wc-rest-products-controller.php);
- checkout (includes/class-wc-discounts.php): WC_Discounts' validation (exists, usage limit,
  expiry, minimum/maximum spend, product ids, email restrictions) and its arithmetic in cents
  for percent, fixed_product (with limit_usage_to_x_items) and fixed_cart, with
  discounts calculated on the prices before other coupons (the default).

Fields that would change a checkout but are not modelled (categories, sale items, per-user
limits) are refused with `standin_unsupported` rather than silently ignored.

Run it for another process: `python -m tests.standins.woocommerce --port 8080 --seed-sku REFILL-1=20.00`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import itertools
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit
from zoneinfo import ZoneInfo

from channels.sinks import LocalHttpServer

PREFIX = "/wp-json/wc/v3/"
BATCH_LIMIT = 100
COUPON_TYPES = ("percent", "fixed_cart", "fixed_product")
OAUTH_WINDOW = timedelta(minutes=15)
ISO_WITH_OFFSET = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(Z|([-+])(\d{2}):(\d{2}))$")

# The documented type of each writable coupon field ("string", "integer", "boolean",
# "array<integer>", "array<string>", "date", "meta").
COUPON_FIELDS: dict[str, str] = {
    "code": "string", "amount": "string", "status": "string", "discount_type": "string",
    "description": "string", "date_expires": "date", "date_expires_gmt": "date",
    "individual_use": "boolean", "product_ids": "array<integer>", "excluded_product_ids": "array<integer>",
    "usage_limit": "integer", "usage_limit_per_user": "integer", "limit_usage_to_x_items": "integer",
    "free_shipping": "boolean", "product_categories": "array<integer>",
    "excluded_product_categories": "array<integer>", "exclude_sale_items": "boolean",
    "minimum_amount": "string", "maximum_amount": "string", "email_restrictions": "array<string>",
    "meta_data": "meta",
}
# Fields that change what a checkout gives, which this stand-in does not model: refused
# when set, so that a client relying on them is not told they work.
UNMODELLED = ("usage_limit_per_user", "product_categories", "excluded_product_categories", "exclude_sale_items")


class CouponRefused(Exception):
    """WooCommerce's checkout refused the code; the message is WooCommerce's."""


class _Reply(Exception):
    """An HTTP answer decided while handling a request."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _wp_error(code: str, message: str, status: int, **data: Any) -> dict[str, Any]:
    return {"code": code, "message": message, "data": {"status": status, **data}}


@dataclass
class Product:
    id: int
    sku: str
    price: Decimal
    type: str = "simple"
    parent_id: int = 0
    name: str = ""


@dataclass
class Coupon:
    id: int
    code: str
    discount_type: str = "fixed_cart"
    amount: Decimal = Decimal("0")
    status: str = "publish"
    description: str = ""
    date_created: datetime = field(default_factory=lambda: datetime.now(UTC))
    date_expires: datetime | None = None
    usage_count: int = 0
    individual_use: bool = False
    product_ids: list[int] = field(default_factory=list)
    excluded_product_ids: list[int] = field(default_factory=list)
    usage_limit: int = 0
    limit_usage_to_x_items: int | None = None
    free_shipping: bool = False
    minimum_amount: Decimal = Decimal("0")
    maximum_amount: Decimal = Decimal("0")
    email_restrictions: list[str] = field(default_factory=list)
    meta_data: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Call:
    method: str
    route: str
    query: dict[str, str]
    items: int  # create+update+delete items of a batch call, else 0
    status: int


@dataclass
class _Key:
    consumer_key: str
    consumer_secret: str
    permissions: str  # "read", "write" or "read_write"
    nonces: dict[str, datetime] = field(default_factory=dict)


@dataclass
class _Line:
    key: int
    product: Product
    quantity: int
    price: Decimal  # the line's price in cents (unit price x quantity), as WC_Discounts keeps it


class WooCommerceStandIn(LocalHttpServer):
    """Start with `with WooCommerceStandIn(...) as shop:`; `shop.url` is the site URL."""

    def __init__(
        self,
        *,
        consumer_key: str = "ck_standin",
        consumer_secret: str = "cs_standin",
        permissions: str = "read_write",
        currency: str = "USD",
        price_decimals: int = 2,
        site_timezone: str = "UTC",
        behind_tls: bool = False,
        batch_limit: int = BATCH_LIMIT,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        latency: float = 0.0,
        port: int = 0,
    ) -> None:
        self._key: _Key | None = _Key(consumer_key, consumer_secret, permissions)
        self.currency = currency
        self.price_decimals = price_decimals
        self.site_timezone = ZoneInfo(site_timezone)
        self.behind_tls = behind_tls
        self.batch_limit = batch_limit
        self.clock = clock
        self.latency = latency
        self._lock = threading.RLock()
        self._products: dict[int, Product] = {}
        self._coupons: dict[int, Coupon] = {}
        self._ids = itertools.count(101)
        self._calls: list[Call] = []
        self._faults: list[int] = []
        self._fault_status: int | None = None
        self._answers_to_lose: list[str] = []
        super().__init__(self._handler_class(), "127.0.0.1", port)

    # -- lifecycle ---------------------------------------------------------------------

    def serve_forever(self) -> None:
        self._server.serve_forever()

    # -- the shop's catalogue and faults --------------------------------------------------

    def add_product(self, sku: str, price: Decimal | str, *, type: str = "simple", parent_id: int = 0,
                    name: str = "") -> int:
        with self._lock:
            product = Product(next(self._ids), sku, Decimal(str(price)), type, parent_id, name or sku)
            self._products[product.id] = product
            return product.id

    def fail_next(self, count: int, status: int = 503) -> None:
        """The next `count` requests get `status` with an HTML body, as a host's error page."""
        with self._lock:
            self._faults.extend([status] * count)

    @contextmanager
    def outage(self, status: int = 503) -> Iterator[None]:
        """Every request gets `status` while inside the block."""
        with self._lock:
            self._fault_status = status
        try:
            yield
        finally:
            with self._lock:
                self._fault_status = None

    def lose_next_answer(self, route: str) -> None:
        """The next request to `route` (such as "coupons/batch") is carried out but its
        answer never arrives (the connection closes first), as when a worker dies or the
        network cuts between the shop's work and its reply."""
        with self._lock:
            self._answers_to_lose.append(route)

    def add_coupon(self, code: str, **fields: Any) -> int:
        """A coupon the seller made in the shop's admin (`fields` as the REST API takes them)."""
        with self._lock:
            created = self._create_coupon({"code": code, **fields})
            if "error" in created:
                raise ValueError(created["error"]["message"])
            return int(created["id"])

    def revoke_key(self) -> None:
        """The seller revoked the REST API key: it no longer authenticates."""
        with self._lock:
            self._key = None

    # -- inspection --------------------------------------------------------------------

    def codes(self) -> set[str]:
        """The codes of the published coupons, as WooCommerce stores them (lower case)."""
        with self._lock:
            return {coupon.code for coupon in self._coupons.values() if coupon.status == "publish"}

    def coupon(self, code: str) -> Coupon | None:
        with self._lock:
            return self._published(_format_code(code))

    def calls(self, route: str | None = None) -> list[Call]:
        with self._lock:
            return [call for call in self._calls if route is None or call.route == route]

    def checkout(self, code: str, lines: Iterable[tuple[str, int]], *, email: str | None = None) -> Decimal:
        """Place an order for `lines` (SKU, quantity) with `code` applied: its total after
        the discount, or CouponRefused with WooCommerce's message. The coupon's usage
        count goes up, as with a paid order."""
        with self._lock:
            cart = self._cart(lines)
            coupon = self._published(_format_code(code))
            if coupon is None:
                raise CouponRefused(f'Coupon "{_format_code(code)}" does not exist!')
            self._validate(coupon, cart, email)
            discount = _Discounts(cart, self.price_decimals).apply(coupon)
            coupon.usage_count += 1
            subtotal = sum((line.price for line in cart), Decimal(0))
            return ((subtotal - discount) / _scale(self.price_decimals)).quantize(_unit(self.price_decimals))

    def _cart(self, lines: Iterable[tuple[str, int]]) -> list[_Line]:
        cart = []
        for key, (sku, quantity) in enumerate(lines):
            product = next((p for p in self._products.values() if p.sku == sku), None)
            if product is None:
                raise KeyError(f"no product with SKU {sku!r} in the stand-in")
            cart.append(_Line(key, product, quantity, product.price * _scale(self.price_decimals) * quantity))
        # WC_Discounts::sort_by_price: dearest line first.
        return sorted(cart, key=lambda line: -line.price * line.quantity)

    def _validate(self, coupon: Coupon, cart: list[_Line], email: str | None) -> None:
        """WC_Discounts::is_coupon_valid, in its order, with its messages."""
        if coupon.usage_limit and coupon.usage_count >= coupon.usage_limit:
            raise CouponRefused("Coupon usage limit has been reached.")
        if coupon.date_expires is not None and self.clock() > coupon.date_expires:
            raise CouponRefused("This coupon has expired.")
        subtotal = sum((line.price for line in cart), Decimal(0)) / _scale(self.price_decimals)
        if coupon.minimum_amount > 0 and coupon.minimum_amount > subtotal:
            raise CouponRefused(f"The minimum spend for this coupon is {coupon.minimum_amount}.")
        if coupon.maximum_amount > 0 and coupon.maximum_amount < subtotal:
            raise CouponRefused(f"The maximum spend for this coupon is {coupon.maximum_amount}.")
        not_applicable = "Sorry, this coupon is not applicable to selected products."
        if coupon.product_ids and not any(_ids(line.product) & set(coupon.product_ids) for line in cart):
            raise CouponRefused(not_applicable)
        if coupon.discount_type != "fixed_cart" and not any(_valid_for_product(coupon, line.product) for line in cart):
            raise CouponRefused(not_applicable)
        if coupon.discount_type == "fixed_cart" and coupon.excluded_product_ids:
            names = [line.product.name for line in cart if _ids(line.product) & set(coupon.excluded_product_ids)]
            if names:
                raise CouponRefused(f"Sorry, this coupon is not applicable to the products: {', '.join(names)}.")
        if coupon.email_restrictions and (email or "").lower() not in coupon.email_restrictions:
            raise CouponRefused(f'Please enter a valid email to use coupon code "{coupon.code}".')

    # -- HTTP --------------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        shop = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload, headers = shop._answer(self.command, self.path, dict(self.headers.items()), body)
                if status == 0:  # an answer lost on its way
                    self.close_connection = True
                    return
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", headers.pop("Content-Type", "application/json; charset=UTF-8"))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        return Handler

    def _answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict]:
        if self.latency:
            time.sleep(self.latency)
        split = urlsplit(target)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        route = split.path[len(PREFIX):].strip("/") if split.path.startswith(PREFIX) else split.path
        items = 0
        try:
            with self._lock:
                fault = self._faults.pop(0) if self._faults else self._fault_status
            if fault is not None:
                raise _Reply(fault, b"<html><body><h1>Service unavailable</h1></body></html>",
                             {"Content-Type": "text/html", "Retry-After": "1"})
            with self._lock:
                payload = _json_body(body) if body else {}
                if route == "coupons/batch" and isinstance(payload, dict):
                    items = sum(len(payload.get(action) or []) for action in ("create", "update", "delete")
                                if isinstance(payload.get(action), list))
                status, answer = self._route(method, split.path, route, query, headers, payload)
                reply = _Reply(status, answer)
        except _Reply as decided:
            reply = decided
        with self._lock:
            self._calls.append(Call(method, route, query, items, reply.status))
            if route in self._answers_to_lose:
                self._answers_to_lose.remove(route)
                return 0, b"", {}
        return reply.status, reply.body, dict(reply.headers)

    def _route(self, method: str, path: str, route: str, query: dict[str, str], headers: dict[str, str],
               payload: Any) -> tuple[int, Any]:
        if not path.startswith(PREFIX):
            raise _Reply(404, _wp_error("rest_no_route", "No route was found matching the URL and request method.", 404))
        key = self._authenticate(method, path, query, headers)
        if method == "GET" and route == "products":
            self._allow(key, method, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
            return 200, [self._product_json(p) for p in self._products_by_sku(query.get("sku", ""))]
        if method == "GET" and route == "coupons":
            self._allow(key, method, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
            return 200, self._list_coupons(query)
        if method == "GET" and route == "data/currencies/current":
            self._allow(key, method, "woocommerce_rest_cannot_view", "Sorry, you cannot view this resource.")
            return 200, {"code": self.currency, "name": self.currency, "symbol": self.currency}
        if method == "POST" and route == "coupons":
            self._allow(key, method, "woocommerce_rest_cannot_create", "Sorry, you are not allowed to create resources.")
            if not isinstance(payload, dict):
                raise _Reply(400, _wp_error("rest_invalid_json", "Invalid JSON body passed.", 400))
            result = self._create_coupon(payload)
            return (400 if "error" in result else 201), (result.get("error") or result)
        if method in ("POST", "PUT", "PATCH") and route == "coupons/batch":
            self._allow(key, method, "woocommerce_rest_cannot_batch",
                        "Sorry, you are not allowed to batch manipulate this resource.")
            return 200, self._batch(payload)
        raise _Reply(404, _wp_error("rest_no_route", "No route was found matching the URL and request method.", 404))

    # -- authentication (WC_REST_Authentication) -----------------------------------------

    def _authenticate(self, method: str, path: str, query: dict[str, str], headers: dict[str, str]) -> _Key | None:
        if self.behind_tls:
            given_key, given_secret = query.get("consumer_key", ""), query.get("consumer_secret", "")
            if not (given_key and given_secret):
                given_key, given_secret = _basic_credentials(headers)
            if given_key and given_secret and self._key is not None and given_key == self._key.consumer_key:
                if not hmac.compare_digest(given_secret, self._key.consumer_secret):
                    raise _Reply(401, _wp_error("woocommerce_rest_authentication_error", "Consumer secret is invalid.", 401),
                                 {"WWW-Authenticate": 'Basic realm="WooCommerce API"'})
                return self._key
        return self._oauth(method, path, query)

    def _oauth(self, method: str, path: str, query: dict[str, str]) -> _Key | None:
        names = ("oauth_consumer_key", "oauth_timestamp", "oauth_nonce", "oauth_signature", "oauth_signature_method")
        missing = [name for name in names if not query.get(name)]
        if len(missing) == len(names):
            return None
        if missing:
            word = "parameter" if len(missing) == 1 else "parameters"
            raise _Reply(401, _wp_error("woocommerce_rest_authentication_missing_parameter",
                                        f"Missing OAuth {word} {', '.join(missing)}", 401))
        key = self._key
        if key is None or query["oauth_consumer_key"] != key.consumer_key:
            raise _Reply(401, _wp_error("woocommerce_rest_authentication_error", "Consumer key is invalid.", 401))
        algorithm = {"HMAC-SHA1": hashlib.sha1, "HMAC-SHA256": hashlib.sha256}.get(query["oauth_signature_method"])
        if algorithm is None:
            raise _Reply(401, _wp_error("woocommerce_rest_authentication_error",
                                        "Invalid signature - signature method is invalid.", 401))
        scheme = "https" if self.behind_tls else "http"
        base_uri = f"{scheme}://127.0.0.1:{self._server.server_address[1]}{path}"
        signed = {name: value for name, value in query.items() if name != "oauth_signature"}
        pairs = "%26".join(_raw(f"{_raw(name)}={_raw(signed[name])}") for name in sorted(signed))
        text = f"{method}&{_raw(base_uri)}&{pairs}"
        expected = base64.b64encode(hmac.new(f"{key.consumer_secret}&".encode(), text.encode(), algorithm).digest())
        if not hmac.compare_digest(expected.decode(), query["oauth_signature"].replace(" ", "+")):
            raise _Reply(401, _wp_error("woocommerce_rest_authentication_error",
                                        "Invalid signature - provided signature does not match.", 401))
        now = self.clock()
        try:
            stamp = datetime.fromtimestamp(int(query["oauth_timestamp"]), UTC)
        except (ValueError, OverflowError):
            stamp = datetime.fromtimestamp(0, UTC)
        if abs(now - stamp) > OAUTH_WINDOW:
            raise _Reply(401, _wp_error("woocommerce_rest_authentication_error", "Invalid timestamp.", 401))
        key.nonces = {nonce: at for nonce, at in key.nonces.items() if now - at <= OAUTH_WINDOW}
        if query["oauth_nonce"] in key.nonces:
            raise _Reply(401, _wp_error("woocommerce_rest_authentication_error",
                                        "Invalid nonce - nonce has already been used.", 401))
        key.nonces[query["oauth_nonce"]] = stamp
        return key

    @staticmethod
    def _allow(key: _Key | None, method: str, code: str, message: str) -> None:
        if key is None:  # no user: the route's own permission check fails
            raise _Reply(401, _wp_error(code, message, 401))
        wanted = "read" if method in ("GET", "HEAD") else "write"
        if wanted not in key.permissions.split("_"):
            raise _Reply(401, _wp_error("woocommerce_rest_authentication_error",
                                        f"The API key provided does not have {wanted} permissions.", 401))

    # -- products and coupons ----------------------------------------------------------

    def _products_by_sku(self, sku: str) -> list[Product]:
        if not sku:
            return [p for p in self._products.values() if p.type != "variation"]
        wanted = set(sku.split(","))
        if len(wanted) > 1:
            wanted.add(sku)
        return [p for p in self._products.values() if p.sku in wanted]

    def _product_json(self, product: Product) -> dict[str, Any]:
        price = self._money(product.price)
        return {"id": product.id, "name": product.name, "type": product.type, "status": "publish",
                "sku": product.sku, "price": price, "regular_price": price, "sale_price": "",
                "parent_id": product.parent_id, "purchasable": True}

    def _published(self, code: str) -> Coupon | None:
        found = [c for c in self._coupons.values() if c.code == code and c.status == "publish"]
        return max(found, key=lambda c: c.id) if found else None

    def _list_coupons(self, query: dict[str, str]) -> list[dict[str, Any]]:
        if query.get("code"):
            coupon = self._published(_format_code(query["code"]))
            return [] if coupon is None else [self._coupon_json(coupon)]
        per_page = max(1, min(100, int(query.get("per_page") or 10)))
        page = max(1, int(query.get("page") or 1))
        coupons = sorted((c for c in self._coupons.values() if c.status != "trash"), key=lambda c: -c.id)
        return [self._coupon_json(c) for c in coupons[(page - 1) * per_page:page * per_page]]

    def _batch(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise _Reply(400, _wp_error("rest_invalid_json", "Invalid JSON body passed.", 400))
        actions: dict[str, list[Any]] = {}
        for action in ("create", "update", "delete"):
            items = payload.get(action)
            if items and not isinstance(items, list):
                raise _Reply(400, _wp_error("rest_invalid_param", f"Invalid parameter(s): {action}", 400,
                                            params={action: f"{action} is not of type array."}))
            if items:
                actions[action] = items
        total = sum(len(items) for items in actions.values())
        if total > self.batch_limit:
            raise _Reply(413, _wp_error("woocommerce_rest_request_entity_too_large",
                                        f"Unable to accept more than {self.batch_limit} items for this request.", 413))
        if "update" in actions:
            raise _Reply(400, _wp_error("standin_unsupported", "The stand-in does not model batch update.", 400))
        answer: dict[str, list[dict[str, Any]]] = {}
        for item in actions.get("create", []):
            answer.setdefault("create", []).append(self._create_coupon(item) if isinstance(item, dict) else
                                                   {"id": 0, "error": _wp_error("rest_invalid_param",
                                                                                "Invalid parameter(s): create", 400)})
        for raw_id in actions.get("delete", []):
            coupon_id = _php_int(raw_id)
            if coupon_id == 0:
                continue
            coupon = self._coupons.get(coupon_id)
            if coupon is None:
                answer.setdefault("delete", []).append(
                    {"id": coupon_id, "error": _wp_error("woocommerce_rest_shop_coupon_invalid_id", "Invalid ID.", 404)})
                continue
            answer.setdefault("delete", []).append(self._coupon_json(coupon))
            del self._coupons[coupon_id]
        return answer

    def _create_coupon(self, item: dict[str, Any]) -> dict[str, Any]:
        """One created coupon's JSON, or `{"id": 0, "error": ...}` as a batch answers."""

        def refused(code: str, message: str, status: int = 400, **data: Any) -> dict[str, Any]:
            return {"id": 0, "error": _wp_error(code, message, status, **data)}

        if item.get("id"):
            return refused("woocommerce_rest_shop_coupon_exists", "Cannot create existing shop_coupon.")
        wrong = {name: f"{name} is not of type {kind}." for name, kind in COUPON_FIELDS.items()
                 if name in item and not _has_type(item[name], kind)}
        if wrong:
            return refused("rest_invalid_param", f"Invalid parameter(s): {', '.join(wrong)}", params=wrong)
        unmodelled = [name for name in UNMODELLED if item.get(name)]
        if unmodelled:
            return refused("standin_unsupported", f"The stand-in does not model {', '.join(unmodelled)}.")
        if not item.get("code"):
            return refused("woocommerce_rest_empty_coupon_code", "The coupon code cannot be empty.")
        code = _format_code(item["code"])
        if self._published(code) is not None:
            return refused("woocommerce_rest_coupon_code_already_exists", "The coupon code already exists")
        coupon = Coupon(id=0, code=code, date_created=self.clock())
        amount = _wc_decimal(item.get("amount"))
        if amount < 0:
            return refused("coupon_invalid_amount", "Invalid discount amount.")
        coupon.amount = amount
        discount_type = item.get("discount_type", "fixed_cart")
        if discount_type == "percent_product":
            discount_type = "percent"
        if discount_type not in COUPON_TYPES:
            return refused("coupon_invalid_discount_type", "Invalid discount type.")
        coupon.discount_type = discount_type
        emails = [email.strip().lower() for email in item.get("email_restrictions") or [] if email.strip()]
        if any(not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email) for email in emails):
            return refused("coupon_invalid_email_address", "Invalid email address restriction.")
        coupon.email_restrictions = emails
        coupon.status = item.get("status") or "publish"
        coupon.description = item.get("description") or ""
        if "date_expires" in item:
            coupon.date_expires = self._wc_date(item["date_expires"])
        coupon.individual_use = bool(item.get("individual_use", False))
        coupon.product_ids = [i for i in (_php_int(v) for v in item.get("product_ids") or []) if i]
        coupon.excluded_product_ids = [i for i in (_php_int(v) for v in item.get("excluded_product_ids") or []) if i]
        coupon.usage_limit = abs(_php_int(item.get("usage_limit") or 0))
        limit = item.get("limit_usage_to_x_items")
        coupon.limit_usage_to_x_items = None if limit is None else abs(_php_int(limit))
        coupon.free_shipping = bool(item.get("free_shipping", False))
        coupon.minimum_amount = _wc_decimal(item.get("minimum_amount"))
        coupon.maximum_amount = _wc_decimal(item.get("maximum_amount"))
        coupon.meta_data = [{"id": next(self._ids), "key": meta["key"], "value": meta.get("value")}
                            for meta in item.get("meta_data") or []]
        coupon.id = next(self._ids)
        self._coupons[coupon.id] = coupon
        return self._coupon_json(coupon)

    def _wc_date(self, value: Any) -> datetime | None:
        """WC_Data::set_date_prop for a string (the documented type)."""
        if not value:
            return None
        text = str(value)
        if text.isdigit():
            return datetime.fromtimestamp(int(text), UTC)
        match = ISO_WITH_OFFSET.match(text)
        if match:
            year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
            naive = datetime(year, month, day, hour, minute, second)
            if match.group(7) == "Z":
                return naive.replace(tzinfo=UTC)
            offset = timedelta(hours=int(match.group(9)), minutes=int(match.group(10)))
            return (naive - (offset if match.group(8) == "+" else -offset)).replace(tzinfo=UTC)
        for form in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
            try:
                return datetime.strptime(text, form).replace(tzinfo=self.site_timezone).astimezone(UTC)
            except ValueError:
                continue
        return datetime.fromtimestamp(0, UTC)  # strtotime() fails: PHP goes on with 0

    def _coupon_json(self, coupon: Coupon) -> dict[str, Any]:
        def local(when: datetime | None) -> str | None:
            return None if when is None else when.astimezone(self.site_timezone).strftime("%Y-%m-%dT%H:%M:%S")

        def gmt(when: datetime | None) -> str | None:
            return None if when is None else when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")

        return {
            "id": coupon.id, "code": coupon.code, "amount": self._money(coupon.amount, 2), "status": coupon.status,
            "date_created": local(coupon.date_created), "date_created_gmt": gmt(coupon.date_created),
            "date_modified": local(coupon.date_created), "date_modified_gmt": gmt(coupon.date_created),
            "discount_type": coupon.discount_type, "description": coupon.description,
            "date_expires": local(coupon.date_expires), "date_expires_gmt": gmt(coupon.date_expires),
            "usage_count": coupon.usage_count, "individual_use": coupon.individual_use,
            "product_ids": coupon.product_ids, "excluded_product_ids": coupon.excluded_product_ids,
            "usage_limit": coupon.usage_limit or None, "usage_limit_per_user": None,
            "limit_usage_to_x_items": coupon.limit_usage_to_x_items or None,
            "free_shipping": coupon.free_shipping, "product_categories": [], "excluded_product_categories": [],
            "exclude_sale_items": False, "minimum_amount": self._money(coupon.minimum_amount, 2),
            "maximum_amount": self._money(coupon.maximum_amount, 2),
            "email_restrictions": coupon.email_restrictions, "used_by": [], "meta_data": coupon.meta_data,
        }

    def _money(self, amount: Decimal, decimals: int | None = None) -> str:
        return str(amount.quantize(_unit(self.price_decimals if decimals is None else decimals)))


class _Discounts:
    """WC_Discounts for one coupon, in cents (the store's smallest unit)."""

    def __init__(self, cart: list[_Line], decimals: int) -> None:
        self.cart = cart
        self.scale = _scale(decimals)
        self.given = {line.key: Decimal(0) for line in cart}

    def apply(self, coupon: Coupon) -> Decimal:
        lines = [line for line in self.cart if self._left(line) > 0 and line.quantity > 0
                 and (coupon.discount_type == "fixed_cart" or _valid_for_product(coupon, line.product))]
        amount = coupon.amount * self.scale
        if coupon.discount_type == "percent":
            self._percent(coupon, lines)
        elif coupon.discount_type == "fixed_product":
            self._fixed_product(coupon, lines, amount)
        else:
            self._fixed_cart(coupon, lines, amount)
        return sum(self.given.values(), Decimal(0))

    def _left(self, line: _Line) -> Decimal:
        """get_discounted_price_in_cents: absint(round(price - discount)), PHP's round half up."""
        return abs((line.price - self.given[line.key]).quantize(Decimal(1), ROUND_HALF_UP))

    def _percent(self, coupon: Coupon, lines: list[_Line]) -> None:
        limit = coupon.limit_usage_to_x_items or 0
        applied, total, cart_total = 0, Decimal(0), Decimal(0)
        for line in lines:
            left = self._left(line)
            quantity = limit - applied if limit and limit - applied < line.quantity else line.quantity
            quantity = max(0, quantity)
            price = line.price.quantize(Decimal(1), ROUND_HALF_UP) / line.quantity * quantity
            discount = (price * coupon.amount / 100).quantize(Decimal(1), ROUND_FLOOR)
            discount = min(left, discount).quantize(Decimal(1), ROUND_HALF_DOWN)  # wc_round_discount
            cart_total += price
            total += discount
            applied += quantity
            self.given[line.key] += discount
        whole = (cart_total * coupon.amount / 100).quantize(Decimal(1), ROUND_HALF_DOWN)
        if total < whole:
            self._remainder(lines, whole - total)

    def _fixed_product(self, coupon: Coupon, lines: list[_Line], amount: Decimal) -> Decimal:
        limit = coupon.limit_usage_to_x_items or 0
        applied, total = 0, Decimal(0)
        for line in lines:
            left = self._left(line)
            if limit:
                quantity = max(0, limit - applied if limit - applied < line.quantity else line.quantity)
                discount = min(amount, line.price / line.quantity) * quantity
            else:
                quantity = line.quantity
                discount = amount * quantity
            discount = min(left, discount)
            total += discount
            applied += quantity
            self.given[line.key] += discount
        return total

    def _fixed_cart(self, coupon: Coupon, lines: list[_Line], amount: Decimal) -> Decimal:
        lines = [line for line in lines if self._left(line) > 0]
        count = sum(line.quantity for line in lines)
        if not count:
            return Decimal(0)
        per_item = (amount / count).quantize(Decimal(1), ROUND_FLOOR)
        if per_item > 0:
            total = self._fixed_product(coupon, lines, per_item)
            if 0 < total < amount:
                total += self._fixed_cart(coupon, lines, amount - total)
            return total
        return self._remainder(lines, amount) if amount > 0 else Decimal(0)

    def _remainder(self, lines: list[_Line], amount: Decimal) -> Decimal:
        total = Decimal(0)
        for line in lines:
            for _ in range(line.quantity):
                discount = min(self._left(line), Decimal(1))
                total += discount
                self.given[line.key] += discount
                if total >= amount:
                    return total
        return total


# -- pure helpers ------------------------------------------------------------------------


def _scale(decimals: int) -> Decimal:
    return Decimal(10) ** decimals


def _unit(decimals: int) -> Decimal:
    return Decimal(1).scaleb(-decimals)


def _ids(product: Product) -> set[int]:
    return {product.id, product.parent_id} - {0}


def _valid_for_product(coupon: Coupon, product: Product) -> bool:
    """WC_Coupon::is_valid_for_product for percent and fixed_product coupons."""
    valid = not coupon.product_ids or bool(_ids(product) & set(coupon.product_ids))
    return valid and not _ids(product) & set(coupon.excluded_product_ids)


def _format_code(code: Any) -> str:
    """wc_format_coupon_code: entities decoded, tags stripped, trimmed, lower case."""
    return re.sub(r"<[^>]*>", "", str(code)).strip().lower()


def _wc_decimal(value: Any) -> Decimal:
    """wc_format_decimal, then WC_Coupon's `is_numeric` fallback to 0."""
    try:
        return Decimal(str(value).strip()) if value not in (None, "") else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def _php_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _has_type(value: Any, kind: str) -> bool:
    """WordPress's rest_validate_value_from_schema for the types the coupon schema uses."""
    if kind == "string":
        return isinstance(value, str)
    if kind == "date":
        return value is None or isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array<integer>":
        return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if kind == "array<string>":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "meta":
        return isinstance(value, list) and all(isinstance(m, dict) and isinstance(m.get("key"), str) for m in value)
    raise ValueError(kind)


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise _Reply(400, _wp_error("rest_invalid_json", "Invalid JSON body passed.", 400)) from None


def _basic_credentials(headers: dict[str, str]) -> tuple[str, str]:
    value = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    if not value.startswith("Basic "):
        return "", ""
    try:
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
    except ValueError:
        return "", ""
    return user, password


def _raw(text: str) -> str:
    """PHP's rawurlencode."""
    return quote(text, safe="-._~")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="WooCommerce REST API v3 stand-in")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed-sku", action="append", default=[], metavar="SKU=PRICE")
    parser.add_argument("--key", default="ck_standin")
    parser.add_argument("--secret", default="cs_standin")
    parser.add_argument("--currency", default="USD")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    arguments = parser.parse_args(argv)
    shop = WooCommerceStandIn(consumer_key=arguments.key, consumer_secret=arguments.secret,
                              currency=arguments.currency, latency=arguments.latency, port=arguments.port)
    for seed in arguments.seed_sku:
        sku, _, price = seed.partition("=")
        shop.add_product(sku, price)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"WooCommerce stand-in at {shop.url} (key {arguments.key})", flush=True)
    try:
        shop.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass


if __name__ == "__main__":
    main()
