"""A Shopify GraphQL Admin API stand-in that enforces what shopify.dev documents.

It executes real GraphQL (graphql-core) over `shopify_admin.graphql`, the part of the
Admin schema (2026-10) Encore uses, so a wrong type, an unknown field or a missing
required argument is refused as Shopify refuses it: HTTP 200 with `errors`. Around
the schema it keeps what Shopify keeps:

- auth: `X-Shopify-Access-Token` must match, else HTTP 401 with Shopify's body;
  `Content-Type: application/json` is required (else 400); only
  `/admin/api/2026-10/graphql.json` answers (else 404; `path_version` moves it, as a
  shops file's `api_url` may name another version: served at a version before 2025-10,
  the discount inputs have no `context`, only `customerSelection`, as in Shopify's).
- the calculated query cost (https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits):
  a leaky bucket of `bucket` points restored at `restore` points/s; the bucket must
  hold a request's *requested* cost before it runs, else the answer is `THROTTLED`
  (HTTP 200, `errors[].extensions.code`, no data); the difference to the *actual*
  cost is refunded afterwards; a single request over 1,000 points is refused
  (`MAX_COST_EXCEEDED`). Every answer carries `extensions.cost` with
  `requestedQueryCost`, `actualQueryCost` and `throttleStatus`. Costs follow the
  documented defaults, simplified: scalar and enum fields 0, an object 1, a union
  the dearest of its fragments, a connection 2 + first (or, actually, the number of
  nodes returned) x the cost of one node, a mutation field 10.
- input arrays of more than 250 items are refused (https://shopify.dev/docs/api/usage/limits).
- "required when creating" fields of the discount inputs (title, code, startsAt,
  context, customerGets; customerBuys for BXGY), value ranges (percentages 0-1,
  amounts > 0, quantities >= 1, endsAt after startsAt) and codes unique in the shop
  (case-insensitive) are checked as `userErrors` with DiscountErrorCode codes.
- `discountRedeemCodeBulkAdd` is asynchronous: a code is usable only once its bulk
  creation is `done`, `bulk_delay` seconds after the call (or when a test releases
  held jobs); a code already in the shop fails in the job with `TAKEN`.
  `discountCodeRedeemCodeBulkDelete` is a `Job` done after the same delay.
- a discount's usage limit applies to each of its redeem codes
  (https://community.shopify.dev/t/scope-of-usagelimit-for-discounts-with-multiple-codes-via-discountredeemcodebulkadd/12269).

Search strings (`query:` arguments) follow Shopify's search syntax: `field:value`
terms, values bare or quoted with ' or " and backslash escapes; like Shopify's search
a term also matches values it is a prefix of, so a client must check what it gets.

`checkout(code, lines)` prices an order by the stand-in's arithmetic (documented on
the method) and refuses what Shopify's checkout refuses: an unknown, expired, not yet
active or used-up code, or one whose discount does not cover the order's items.

Run `python -m tests.standins.shopify_admin --help` to serve it to another process.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from babel.numbers import get_currency_precision, list_currencies
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInt,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    build_schema,
    execute_sync,
    get_named_type,
    is_leaf_type,
    parse,
    validate,
)
from graphql.language.ast import FloatValueNode, IntValueNode, StringValueNode, ValueNode, VariableNode
from graphql.utilities import value_from_ast

SCHEMA_VERSION = "2026-10"
TOKEN_HEADER = "X-Shopify-Access-Token"
INVALID_TOKEN_BODY = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
MAX_SINGLE_QUERY_COST = 1000
MAX_INPUT_ARRAY = 250
MAX_PAGE = 250
MUTATION_COST = 10
MAX_CODE_LENGTH = 255
CODE_TAKEN = "Code must be unique. Please try a different code."


class CheckoutRefused(Exception):
    """The stand-in's checkout would not apply the code; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------- model


@dataclass
class Variant:
    gid: str
    sku: str
    price: Decimal
    title: str
    product_gid: str


@dataclass
class RedeemCode:
    gid: str
    code: str
    discount: Discount
    uses: int = 0


@dataclass
class Discount:
    """One code discount: an amount off (basic) or buy X get Y (bxgy)."""

    number: int
    kind: str  # "basic" | "bxgy"
    title: str
    starts_at: datetime
    ends_at: datetime | None
    usage_limit: int | None
    applies_once_per_customer: bool
    gets_variants: frozenset[str]
    percentage: Decimal | None = None  # basic percentage, or the bxgy effect
    amount: Decimal | None = None  # basic fixed amount
    applies_on_each_item: bool = False
    gets_quantity: int = 0  # bxgy
    buys_variants: frozenset[str] = frozenset()
    buys_quantity: int = 0
    uses_per_order_limit: int | None = None
    combines_with: Mapping[str, bool] = field(default_factory=dict)
    codes: dict[str, RedeemCode] = field(default_factory=dict)  # lower-case code -> code

    @property
    def gid(self) -> str:
        return f"gid://shopify/DiscountCodeNode/{self.number}"

    @property
    def node_gid(self) -> str:
        return f"gid://shopify/DiscountNode/{self.number}"


@dataclass
class BulkCreation:
    gid: str
    discount: Discount
    codes: list[str]
    created_at: datetime
    due: float
    done: bool = False
    results: list[tuple[str, RedeemCode | None, list[dict]]] = field(default_factory=list)


@dataclass
class DeleteJob:
    gid: str
    discount: Discount
    code_gids: frozenset[str]
    due: float
    done: bool = False


@dataclass
class Stats:
    """What a test can assert about the traffic the stand-in saw."""

    requests: int = 0
    throttled: int = 0
    lowest_available: float = float("inf")
    bulk_add_sizes: list[int] = field(default_factory=list)
    mutations: Counter = field(default_factory=Counter)
    costs: list[tuple[str, int, float]] = field(default_factory=list)  # (operation, requested, left after)


class CostBucket:
    """Shopify's leaky bucket of query cost points for one app on one shop."""

    def __init__(self, maximum: float, restore_rate: float, clock: Callable[[], float]) -> None:
        self.maximum = float(maximum)
        self.restore_rate = float(restore_rate)
        self._clock = clock
        self._available = float(maximum)
        self._stamp = clock()

    def available(self) -> float:
        now = self._clock()
        self._available = min(self.maximum, self._available + (now - self._stamp) * self.restore_rate)
        self._stamp = now
        return self._available

    def take(self, points: float) -> bool:
        if self.available() < points:
            return False
        self._available -= points
        return True

    def refund(self, points: float) -> None:
        self._available = min(self.maximum, self.available() + points)

    def status(self) -> dict:
        return {
            "maximumAvailable": self.maximum,
            "currentlyAvailable": round(self.available(), 1),
            "restoreRate": self.restore_rate,
        }


# ----------------------------------------------------------------------- the stand-in


class ShopifyAdmin:
    """The stand-in: state, GraphQL execution, the HTTP server and test helpers."""

    def __init__(
        self,
        *,
        token: str = "shpat_standin",
        shop_name: str = "Glow",
        domain: str = "glow-us.myshopify.com",
        currency: str = "USD",
        bucket: float = 1000,
        restore: float = 100,
        latency: float = 0.0,
        bulk_delay: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        port: int = 0,
        path_version: str = SCHEMA_VERSION,
    ) -> None:
        self.token = token
        self.path_version = path_version
        """The version in the endpoint's path: a shops file's `api_url` names it (SPEC section 7's
        example says 2025-07), and the client must call that URL as written. The schema
        served there is still this stand-in's (2026-10)."""
        self.shop_name = shop_name
        self.domain = domain
        self.currency = currency.upper()
        self.latency = latency
        self.bulk_delay = bulk_delay
        self.stats = Stats()
        self._clock = clock
        self._wall = wall_clock
        self._port = port
        self._bucket = CostBucket(bucket, restore, clock)
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._variants: dict[str, Variant] = {}  # gid -> variant
        self._discounts: dict[str, Discount] = {}  # DiscountCodeNode gid -> discount
        self._codes: dict[str, RedeemCode] = {}  # lower-case code -> redeem code in the shop
        self._bulks: dict[str, BulkCreation] = {}
        self._jobs: dict[str, DeleteJob] = {}
        self._held = False
        self._refuse_token = False
        self._fail_status = 0
        self._fail_count: int | None = None
        self._fail_until: float | None = None
        self._schema = _build_schema(path_version)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- seeding and faults ---------------------------------------------------------

    def seed_variant(self, sku: str, price: Decimal | str, title: str | None = None) -> str:
        """Add a product with one variant carrying `sku` at `price` (shop currency)."""
        with self._lock:
            number = next(self._ids)
            gid = f"gid://shopify/ProductVariant/{number}"
            self._variants[gid] = Variant(
                gid=gid, sku=sku, price=Decimal(str(price)), title=title or sku,
                product_gid=f"gid://shopify/Product/{number}",
            )
            return gid

    def fail_requests(self, status: int = 503, *, count: int | None = None, seconds: float | None = None) -> None:
        """Answer the next `count` requests (or all for `seconds`) with HTTP `status`."""
        with self._lock:
            self._fail_status = status
            self._fail_count = count
            self._fail_until = None if seconds is None else self._clock() + seconds

    def clear_faults(self) -> None:
        with self._lock:
            self._fail_status, self._fail_count, self._fail_until = 0, None, None

    def refuse_token(self, refuse: bool = True) -> None:
        with self._lock:
            self._refuse_token = refuse

    def hold_bulk_jobs(self) -> None:
        """Keep every bulk creation and deletion job `done: false` until released."""
        with self._lock:
            self._held = True

    def release_bulk_jobs(self) -> None:
        with self._lock:
            self._held = False

    # -- inspection -----------------------------------------------------------------

    def codes(self) -> set[str]:
        """Every redeem code that exists in the shop now (bulk jobs that are due are run)."""
        with self._lock:
            self._settle()
            return {code.code for code in self._codes.values()}

    def discount_of(self, code: str) -> Discount | None:
        with self._lock:
            self._settle()
            found = self._codes.get(code.lower())
            return found.discount if found else None

    def discounts(self) -> list[Discount]:
        with self._lock:
            return list(self._discounts.values())

    def pending_bulk_jobs(self) -> int:
        with self._lock:
            return sum(1 for bulk in self._bulks.values() if not bulk.done)

    def checkout(self, code: str, lines: Mapping[str, int], *, at: datetime | None = None) -> Decimal:
        """The order total, in the shop's currency, for `lines` (SKU -> quantity) with `code`.

        Arithmetic: the subtotal is each line's variant price x quantity; then
        - basic, fixed amount, appliesOnEachItem false: the amount comes off once per
          order, split over the entitled lines, never more than their total;
        - basic, fixed amount, appliesOnEachItem true: the amount comes off each entitled
          unit, never more than its price;
        - basic, percentage: that share of the entitled lines' total comes off;
        - bxgy: each application needs `buys_quantity` entitled units bought plus
          `gets_quantity` entitled units to discount (the same unit never counts twice),
          at most `uses_per_order_limit` applications; each discounts `gets_quantity`
          units (the cheapest entitled ones) by the effect's percentage.
        Each discount is rounded half-up to the currency's minor unit. A successful
        checkout uses the code once. Raises CheckoutRefused for an unknown code, one
        not active yet or expired at `at` (default: now), one used up (its discount's
        usage limit, per code), or one whose discount covers none of the lines.
        """
        at = at or self._wall()
        with self._lock:
            self._settle()
            redeem = self._codes.get(code.lower())
            if redeem is None:
                raise CheckoutRefused("unknown code")
            discount = redeem.discount
            if at < discount.starts_at:
                raise CheckoutRefused("not active yet")
            if discount.ends_at is not None and at >= discount.ends_at:
                raise CheckoutRefused("expired")
            if discount.usage_limit is not None and redeem.uses >= discount.usage_limit:
                raise CheckoutRefused("usage limit reached")
            units = self._units(lines)
            subtotal = sum((price for _gid, price in units), Decimal(0))
            off = self._discount_amount(discount, units)
            if off is None:
                raise CheckoutRefused("the discount does not apply to these items")
            redeem.uses += 1
            return subtotal - off

    # -- server ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the stand-in is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The GraphQL endpoint, as `api_url` in a shops file."""
        return f"http://127.0.0.1:{self.port}/admin/api/{self.path_version}/graphql.json"

    def start(self) -> ShopifyAdmin:
        handler = type("Handler", (_Handler,), {"admin": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="shopify-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ShopifyAdmin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- one HTTP request -----------------------------------------------------------

    def answer(self, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict]:
        """Status and JSON body for one POST, everything but the latency."""
        with self._lock:
            self.stats.requests += 1
            if path != f"/admin/api/{self.path_version}/graphql.json":
                return 404, {"errors": "Not Found"}
            fault = self._fault()
            if fault:
                return fault, {"errors": "Service Unavailable" if fault >= 500 else "Error"}
            if self._refuse_token or headers.get(TOKEN_HEADER.lower()) != self.token:
                return 401, INVALID_TOKEN_BODY
            if not headers.get("content-type", "").startswith("application/json"):
                return 400, {"errors": "Content-Type must be application/json"}
            try:
                request = json.loads(body)
                query = request["query"]
                variables = request.get("variables") or {}
            except (ValueError, KeyError, TypeError):
                return 400, {"errors": "Bad Request: the body must be JSON with a `query`"}
            return 200, self._execute(query, variables, request.get("operationName"))

    def _fault(self) -> int:
        if not self._fail_status:
            return 0
        if self._fail_until is not None and self._clock() >= self._fail_until:
            self.clear_faults()
            return 0
        if self._fail_count is not None:
            if self._fail_count <= 0:
                self.clear_faults()
                return 0
            self._fail_count -= 1
        return self._fail_status

    def _execute(self, query: str, variables: dict, operation_name: str | None) -> dict:
        self._settle()
        try:
            document = parse(query)
        except GraphQLError as error:
            return self._errors_answer([error.formatted], 0)
        problems = validate(self._schema, document)
        if problems:
            return self._errors_answer([problem.formatted for problem in problems], 0)
        operation = _operation(document, operation_name)
        if operation is None:
            return self._errors_answer([{"message": "No operation named in the document"}], 0)
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        coster = _Coster(self._schema, fragments, variables)
        try:
            requested = coster.operation(operation)
        except GraphQLError as error:
            return self._errors_answer([error.formatted], 0)
        if requested > MAX_SINGLE_QUERY_COST:
            return self._errors_answer([{
                "message": f"Query cost is {requested}, which exceeds the single query max cost limit "
                           f"({MAX_SINGLE_QUERY_COST}).",
                "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested,
                               "maxCost": MAX_SINGLE_QUERY_COST},
            }], requested)
        if not self._bucket.take(requested):
            self.stats.throttled += 1
            return {
                "errors": [{"message": "Throttled", "extensions": {
                    "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                "extensions": {"cost": {"requestedQueryCost": requested, "actualQueryCost": None,
                                        "throttleStatus": self._bucket.status()}},
            }
        left = self._bucket.available()
        self.stats.lowest_available = min(self.stats.lowest_available, left)
        self.stats.costs.append((operation.name.value if operation.name else "", requested, left))
        root = _Root(self) if operation.operation == OperationType.QUERY else _MutationRoot(self)
        result = execute_sync(self._schema, document, root_value=root, variable_values=variables,
                              operation_name=operation_name)
        actual = requested if operation.operation == OperationType.MUTATION else coster.operation(operation, result.data)
        self._bucket.refund(max(0, requested - actual))
        answer: dict[str, Any] = {"data": result.data}
        if result.errors:
            answer["errors"] = [error.formatted for error in result.errors]
        answer["extensions"] = {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual,
                                         "throttleStatus": self._bucket.status()}}
        return answer

    def _errors_answer(self, errors: list, requested: int) -> dict:
        return {"errors": errors, "extensions": {"cost": {
            "requestedQueryCost": requested, "actualQueryCost": None, "throttleStatus": self._bucket.status()}}}

    # -- asynchronous jobs ----------------------------------------------------------

    def _settle(self) -> None:
        """Run the bulk jobs whose time has come (lazily, on each request or look)."""
        if self._held:
            return
        now = self._clock()
        for bulk in self._bulks.values():
            if not bulk.done and bulk.due <= now:
                self._run_bulk(bulk)
        for job in self._jobs.values():
            if not job.done and job.due <= now:
                for lower, redeem in list(job.discount.codes.items()):
                    if redeem.gid in job.code_gids:
                        del job.discount.codes[lower]
                        self._codes.pop(lower, None)
                job.done = True

    def _run_bulk(self, bulk: BulkCreation) -> None:
        for code in bulk.codes:
            errors = _code_errors(code, field_path=["code"])
            if not errors and code.lower() in self._codes:
                errors = [_user_error("TAKEN", ["code"], CODE_TAKEN)]
            if errors:
                bulk.results.append((code, None, errors))
                continue
            redeem = self._new_code(bulk.discount, code)
            bulk.results.append((code, redeem, []))
        bulk.done = True

    def _new_code(self, discount: Discount, code: str) -> RedeemCode:
        redeem = RedeemCode(gid=f"gid://shopify/DiscountRedeemCode/{next(self._ids)}", code=code, discount=discount)
        discount.codes[code.lower()] = redeem
        self._codes[code.lower()] = redeem
        return redeem

    # -- checkout arithmetic --------------------------------------------------------

    def _units(self, lines: Mapping[str, int]) -> list[tuple[str, Decimal]]:
        units: list[tuple[str, Decimal]] = []
        for sku, quantity in lines.items():
            variant = next((v for v in self._variants.values() if v.sku == sku), None)
            if variant is None:
                raise CheckoutRefused(f"no product with SKU {sku!r}")
            units.extend([(variant.gid, variant.price)] * quantity)
        return units

    def _round(self, amount: Decimal) -> Decimal:
        exponent = Decimal(1).scaleb(-get_currency_precision(self.currency))
        return amount.quantize(exponent, rounding=ROUND_HALF_UP)

    def _discount_amount(self, discount: Discount, units: list[tuple[str, Decimal]]) -> Decimal | None:
        entitled = sorted(price for gid, price in units if gid in discount.gets_variants)
        if discount.kind == "basic":
            if not entitled:
                return None
            total = sum(entitled, Decimal(0))
            if discount.percentage is not None:
                return self._round(total * discount.percentage)
            assert discount.amount is not None
            if discount.applies_on_each_item:
                return self._round(sum((min(discount.amount, price) for price in entitled), Decimal(0)))
            return self._round(min(discount.amount, total))
        buys = [price for gid, price in units if gid in discount.buys_variants]
        if not buys or not entitled:
            return None
        # Every unit is on one side only: cheapest entitled units are the ones discounted.
        pool = sorted(units, key=lambda unit: unit[1])
        applications, off = 0, Decimal(0)
        limit = discount.uses_per_order_limit
        while limit is None or applications < limit:
            gets = [u for u in pool if u[0] in discount.gets_variants][: discount.gets_quantity]
            rest = list(pool)
            for unit in gets:
                rest.remove(unit)
            bought = [u for u in reversed(rest) if u[0] in discount.buys_variants][: discount.buys_quantity]
            if len(gets) < discount.gets_quantity or len(bought) < discount.buys_quantity:
                break
            assert discount.percentage is not None
            off += sum((price for _gid, price in gets), Decimal(0)) * discount.percentage
            for unit in gets + bought:
                pool.remove(unit)
            applications += 1
        if applications == 0:
            return None
        return self._round(off)

    # -- resolvers' helpers ---------------------------------------------------------

    def _connection(self, items: list, first: int | None, after: str | None, last: int | None) -> dict:
        if first is None and last is None:
            raise GraphQLError("you must provide one of first or last")
        size = first if first is not None else last
        assert size is not None
        if size < 0 or size > MAX_PAGE:
            raise GraphQLError(f"The maximum number of items you can request is {MAX_PAGE}.")
        start = int(after) if after else 0
        if first is not None:
            page = items[start: start + size]
        else:
            page = items[max(0, len(items) - size):]
            start = max(0, len(items) - size)
        return {
            "nodes": page,
            "pageInfo": {
                "hasNextPage": start + len(page) < len(items),
                "hasPreviousPage": start > 0,
                "startCursor": str(start) if page else None,
                "endCursor": str(start + len(page)) if page else None,
            },
        }

    def _status(self, discount: Discount) -> str:
        now = self._wall()
        if now < discount.starts_at:
            return "SCHEDULED"
        if discount.ends_at is not None and now >= discount.ends_at:
            return "EXPIRED"
        return "ACTIVE"

    def discount_view(self, discount: Discount) -> dict:
        def codes(info: Any, first: int | None = None, after: str | None = None,
                  last: int | None = None, before: str | None = None, query: str | None = None) -> dict:
            found = list(discount.codes.values())
            for field_name, value in _search_terms(query or ""):
                if field_name is not None:
                    raise GraphQLError(f"The stand-in searches redeem codes by text only, not by {field_name!r}")
                found = [c for c in found if value.lower() in c.code.lower()]
            return self._connection([_code_view(c) for c in found], first, after, last)

        return {
            "__typename": "DiscountCodeBasic" if discount.kind == "basic" else "DiscountCodeBxgy",
            "title": discount.title,
            "status": self._status(discount),
            "startsAt": discount.starts_at,
            "endsAt": discount.ends_at,
            "usageLimit": discount.usage_limit,
            "usesPerOrderLimit": discount.uses_per_order_limit,
            "appliesOncePerCustomer": discount.applies_once_per_customer,
            "asyncUsageCount": sum(c.uses for c in discount.codes.values()),
            "codes": codes,
        }

    def code_node(self, discount: Discount) -> dict:
        return {"id": discount.gid, "codeDiscount": self.discount_view(discount)}

    def bulk_view(self, bulk: BulkCreation) -> dict:
        def codes(info: Any, first: int | None = None, after: str | None = None,
                  last: int | None = None, before: str | None = None) -> dict:
            rows = [
                {"code": code, "discountRedeemCode": _code_view(redeem) if redeem else None, "errors": errors}
                for code, redeem, errors in bulk.results
            ]
            return self._connection(rows, first, after, last)

        failed = sum(1 for _code, redeem, _errors in bulk.results if redeem is None)
        return {
            "id": bulk.gid,
            "done": bulk.done,
            "codesCount": len(bulk.codes),
            "importedCount": len(bulk.results) - failed,
            "failedCount": failed,
            "createdAt": bulk.created_at,
            "discountCode": self.code_node(bulk.discount),
            "codes": codes,
        }


def _code_view(redeem: RedeemCode) -> dict:
    return {"id": redeem.gid, "code": redeem.code, "asyncUsageCount": redeem.uses}


def _user_error(code: str, field_path: list[str] | None, message: str) -> dict:
    return {"code": code, "field": field_path, "message": message, "extraInfo": None}


def _code_errors(code: str, field_path: list[str]) -> list[dict]:
    if not code or not code.strip():
        return [_user_error("BLANK", field_path, "Code can't be blank")]
    if len(code) > MAX_CODE_LENGTH:
        return [_user_error("TOO_LONG", field_path, f"Code is too long (maximum is {MAX_CODE_LENGTH} characters)")]
    return []


# ----------------------------------------------------------------------- resolvers


class _Root:
    """Query fields (graphql-core calls a callable attribute with info and the arguments)."""

    def __init__(self, admin: ShopifyAdmin) -> None:
        self.admin = admin

    def shop(self, info: Any) -> dict:
        a = self.admin
        return {"id": "gid://shopify/Shop/1", "name": a.shop_name, "myshopifyDomain": a.domain,
                "currencyCode": a.currency}

    def productVariants(self, info: Any, first: int | None = None, after: str | None = None,  # noqa: N802
                        last: int | None = None, before: str | None = None, query: str | None = None) -> dict:
        variants = list(self.admin._variants.values())
        for field_name, value in _search_terms(query or ""):
            if field_name != "sku":
                raise GraphQLError(f"The stand-in filters product variants by sku only, not by {field_name!r}")
            variants = [v for v in variants if v.sku.lower().startswith(value.lower())]
        nodes = [{"id": v.gid, "title": v.title, "sku": v.sku, "price": v.price,
                  "product": {"id": v.product_gid, "title": v.title}} for v in variants]
        return self.admin._connection(nodes, first, after, last)

    def discountNodes(self, info: Any, first: int | None = None, after: str | None = None,  # noqa: N802
                      last: int | None = None, before: str | None = None, query: str | None = None) -> dict:
        discounts = list(self.admin._discounts.values())
        for field_name, value in _search_terms(query or ""):
            if field_name == "title":
                discounts = [d for d in discounts if d.title.lower().startswith(value.lower())]
            elif field_name == "method":
                discounts = [d for d in discounts if value.lower() == "code"]
            else:
                raise GraphQLError(f"The stand-in filters discounts by title and method only, not by {field_name!r}")
        nodes = [{"id": d.node_gid, "discount": self.admin.discount_view(d)} for d in discounts]
        return self.admin._connection(nodes, first, after, last)

    def codeDiscountNodeByCode(self, info: Any, code: str) -> dict | None:  # noqa: N802
        found = self.admin._codes.get(code.lower())
        return self.admin.code_node(found.discount) if found else None

    def discountRedeemCodeBulkCreation(self, info: Any, id: str) -> dict | None:  # noqa: N802,A002
        bulk = self.admin._bulks.get(id)
        return self.admin.bulk_view(bulk) if bulk else None

    def job(self, info: Any, id: str) -> dict | None:  # noqa: A002
        found = self.admin._jobs.get(id)
        return {"id": found.gid, "done": found.done} if found else None


class _MutationRoot:
    def __init__(self, admin: ShopifyAdmin) -> None:
        self.admin = admin

    def discountCodeBasicCreate(self, info: Any, basicCodeDiscount: dict) -> dict:  # noqa: N802,N803
        self.admin.stats.mutations["discountCodeBasicCreate"] += 1
        return self._create("basic", "basicCodeDiscount", basicCodeDiscount)

    def discountCodeBxgyCreate(self, info: Any, bxgyCodeDiscount: dict) -> dict:  # noqa: N802,N803
        self.admin.stats.mutations["discountCodeBxgyCreate"] += 1
        return self._create("bxgy", "bxgyCodeDiscount", bxgyCodeDiscount)

    def discountRedeemCodeBulkAdd(self, info: Any, discountId: str, codes: list[dict]) -> dict:  # noqa: N802,N803
        admin = self.admin
        admin.stats.mutations["discountRedeemCodeBulkAdd"] += 1
        _check_array("codes", codes)
        discount = admin._discounts.get(discountId)
        if discount is None:
            return {"bulkCreation": None,
                    "userErrors": [_user_error("INVALID", ["discountId"], "Code discount does not exist.")]}
        if not codes:
            return {"bulkCreation": None, "userErrors": [_user_error("BLANK", ["codes"], "Codes can't be blank")]}
        admin.stats.bulk_add_sizes.append(len(codes))
        bulk = BulkCreation(
            gid=f"gid://shopify/DiscountRedeemCodeBulkCreation/{next(admin._ids)}",
            discount=discount, codes=[c["code"] for c in codes], created_at=admin._wall(),
            due=admin._clock() + admin.bulk_delay,
        )
        admin._bulks[bulk.gid] = bulk
        return {"bulkCreation": admin.bulk_view(bulk), "userErrors": []}

    def discountCodeRedeemCodeBulkDelete(self, info: Any, discountId: str, ids: list[str] | None = None,  # noqa: N802,N803
                                         search: str | None = None, savedSearchId: str | None = None) -> dict:  # noqa: N803
        admin = self.admin
        admin.stats.mutations["discountCodeRedeemCodeBulkDelete"] += 1
        given = [name for name, value in (("ids", ids), ("search", search), ("savedSearchId", savedSearchId))
                 if value is not None]
        if len(given) != 1:
            code = "TOO_MANY_ARGUMENTS" if given else "MISSING_ARGUMENT"
            return {"job": None, "userErrors": [_user_error(
                code, None, "Only one of ids, search or savedSearchId can be given, and one is required.")]}
        if ids is None:
            return {"job": None, "userErrors": [_user_error(
                "INVALID", [given[0]], "The stand-in deletes redeem codes by ids only.")]}
        _check_array("ids", ids)
        discount = admin._discounts.get(discountId)
        if discount is None:
            return {"job": None,
                    "userErrors": [_user_error("INVALID", ["discountId"], "Code discount does not exist.")]}
        job = DeleteJob(gid=f"gid://shopify/Job/{next(admin._ids)}", discount=discount,
                        code_gids=frozenset(ids), due=admin._clock() + admin.bulk_delay)
        admin._jobs[job.gid] = job
        return {"job": {"id": job.gid, "done": False}, "userErrors": []}

    def _create(self, kind: str, argument: str, given: dict) -> dict:
        admin = self.admin
        errors: list[dict] = []

        def err(code: str, path: list[str], message: str) -> None:
            errors.append(_user_error(code, [argument, *path], message))

        for name in ("title", "code", "startsAt", "customerGets") + (("customerBuys",) if kind == "bxgy" else ()):
            if given.get(name) in (None, ""):
                err("BLANK", [name], f"{name} can't be blank")
        if not given.get("context") and not given.get("customerSelection"):  # "context (or deprecated customerSelection)"
            err("BLANK", ["context"], "context can't be blank")
        selection = given.get("customerSelection") or {}
        if selection and (selection.get("all") is not True or selection.get("customers")
                          or selection.get("customerSegments") or given.get("context")):
            err("INVALID", ["customerSelection"], "The stand-in supports customerSelection { all: true } only, "
                                                  "without context")
        code = given.get("code") or ""
        for problem in _code_errors(code, [argument, "code"]) if code else []:
            errors.append(problem)
        if code and code.lower() in admin._codes:
            err("TAKEN", ["code"], CODE_TAKEN)
        starts, ends = given.get("startsAt"), given.get("endsAt")
        if starts and ends and ends <= starts:
            err("END_DATE_BEFORE_START_DATE", ["endsAt"], "Ends at needs to be after starts_at")
        usage_limit = given.get("usageLimit")
        if usage_limit is not None and not 1 <= usage_limit <= 99_999_999:
            err("VALUE_OUTSIDE_RANGE", ["usageLimit"], "Usage limit must be between 1 and 99,999,999")
        context = given.get("context") or {}
        if context and (context.get("all") != "ALL" or context.get("customers") or context.get("customerSegments")):
            err("INVALID", ["context"], "The stand-in supports context { all: ALL } only")
        discount = Discount(
            number=0, kind=kind, title=given.get("title") or "", starts_at=starts or admin._wall(), ends_at=ends,
            usage_limit=usage_limit, applies_once_per_customer=bool(given.get("appliesOncePerCustomer")),
            gets_variants=frozenset(), combines_with=given.get("combinesWith") or {},
            uses_per_order_limit=given.get("usesPerOrderLimit"),
        )
        gets = given.get("customerGets") or {}
        if gets:
            discount.gets_variants = self._items(gets.get("items"), kind, ["customerGets", "items"], err)
            self._value(discount, gets.get("value"), kind, err)
        buys = given.get("customerBuys") or {}
        if kind == "bxgy" and buys:
            discount.buys_variants = self._items(buys.get("items"), kind, ["customerBuys", "items"], err)
            value = buys.get("value") or {}
            if value.get("amount") is not None or value.get("quantity") is None:
                err("INVALID", ["customerBuys", "value"], "The stand-in supports a bought quantity only")
            elif value["quantity"] < 1:
                err("GREATER_THAN", ["customerBuys", "value", "quantity"], "Quantity must be greater than 0")
            else:
                discount.buys_quantity = value["quantity"]
        if kind == "bxgy" and discount.uses_per_order_limit is not None and discount.uses_per_order_limit < 1:
            err("GREATER_THAN", ["usesPerOrderLimit"], "Uses per order limit must be greater than 0")
        if errors:
            return {"codeDiscountNode": None, "userErrors": errors}
        discount.number = next(admin._ids)
        admin._discounts[discount.gid] = discount
        admin._new_code(discount, code)
        return {"codeDiscountNode": admin.code_node(discount), "userErrors": []}

    def _items(self, items: dict | None, kind: str, path: list[str], err: Callable) -> frozenset[str]:
        items = items or {}
        if items.get("all"):
            if kind == "bxgy":
                err("INVALID", [*path, "all"], "All items is not supported for Buy X get Y discounts")
            else:
                err("INVALID", [*path, "all"], "The stand-in supports product variants only")
            return frozenset()
        if items.get("collections"):
            err("INVALID", [*path, "collections"], "The stand-in supports product variants only")
        products = items.get("products") or {}
        chosen = set(products.get("productVariantsToAdd") or [])
        for product in products.get("productsToAdd") or []:
            chosen |= {v.gid for v in self.admin._variants.values() if v.product_gid == product}
        for gid in products.get("productVariantsToAdd") or []:
            if gid not in self.admin._variants:
                err("INVALID", [*path, "products", "productVariantsToAdd"], f"Product variant {gid} does not exist")
        if not chosen:
            err("BLANK", path, "Items can't be blank")
        return frozenset(chosen)

    def _value(self, discount: Discount, value: dict | None, kind: str, err: Callable) -> None:
        value = value or {}
        path = ["customerGets", "value"]
        given = [name for name in ("percentage", "discountAmount", "discountOnQuantity") if value.get(name) is not None]
        if len(given) != 1:
            err("TOO_MANY_ARGUMENTS" if given else "BLANK", path,
                "Exactly one of percentage, discountAmount or discountOnQuantity is required")
            return
        if kind == "bxgy" and given[0] != "discountOnQuantity":
            err("INVALID", [*path, given[0]], "BXGY doesn't support percentage or discountAmount")
            return
        if kind == "basic" and given[0] == "discountOnQuantity":
            err("INVALID", [*path, given[0]], "discountOnQuantity is for Buy X get Y discounts")
            return
        if given[0] == "percentage":
            discount.percentage = _fraction(value["percentage"], [*path, "percentage"], err)
        elif given[0] == "discountAmount":
            amount = value["discountAmount"].get("amount")
            if amount is None or amount <= 0:
                err("GREATER_THAN", [*path, "discountAmount", "amount"], "Amount must be greater than 0")
            discount.amount = amount
            discount.applies_on_each_item = bool(value["discountAmount"].get("appliesOnEachItem"))
        else:
            on_quantity = value["discountOnQuantity"]
            quantity, effect = on_quantity.get("quantity"), on_quantity.get("effect") or {}
            if quantity is None or quantity < 1:
                err("GREATER_THAN", [*path, "discountOnQuantity", "quantity"], "Quantity must be greater than 0")
            else:
                discount.gets_quantity = quantity
            if effect.get("percentage") is None or effect.get("amount") is not None:
                err("INVALID", [*path, "discountOnQuantity", "effect"], "The stand-in supports a percentage effect only")
            else:
                discount.percentage = _fraction(effect["percentage"], [*path, "discountOnQuantity", "effect"], err)


def _fraction(value: float, path: list[str], err: Callable) -> Decimal | None:
    if not 0 < value <= 1:
        err("VALUE_OUTSIDE_RANGE", path, "Value must be between 0.00 - 1.00")
        return None
    return Decimal(str(value))


def _check_array(name: str, values: list) -> None:
    if len(values) > MAX_INPUT_ARRAY:
        raise GraphQLError(
            f"The input array size of {len(values)} is greater than the maximum allowed of {MAX_INPUT_ARRAY}.",
            extensions={"code": "MAX_INPUT_SIZE_EXCEEDED", "argumentName": name})


# ------------------------------------------------------------------ schema and costs


CONTEXT_SINCE = "2025-10"
"""The discount inputs' `context` exists from this version on
(https://shopify.dev/changelog/discount-eligibility-management); before it, only
`customerSelection` says who may use a code."""


def _build_schema(version: str = SCHEMA_VERSION) -> GraphQLSchema:
    """The 2026-10 schema; served at an older version's path, without what that version lacks."""
    sdl = (Path(__file__).with_name("shopify_admin.graphql")).read_text(encoding="utf-8")
    if version != "unstable" and version < CONTEXT_SINCE:
        sdl = sdl.replace("  context: DiscountContextInput\n", "")
    currencies = sorted(code for code in list_currencies() if re.fullmatch(r"[A-Z]{3}", code))
    sdl += "\nenum CurrencyCode {\n" + "\n".join(f"  {code}" for code in currencies) + "\n}\n"
    schema = build_schema(sdl)
    _scalar(schema, "DateTime", _parse_datetime, _write_datetime)
    _scalar(schema, "Decimal", _parse_decimal, str)
    _scalar(schema, "Money", _parse_decimal, lambda value: str(value))
    _scalar(schema, "UnsignedInt64", _parse_unsigned, str)
    for union in ("DiscountCode", "Discount"):
        union_type = schema.type_map[union]
        assert isinstance(union_type, GraphQLUnionType)
        union_type.resolve_type = lambda value, info, abstract: value["__typename"]
    return schema


def _scalar(schema: GraphQLSchema, name: str, parse_value: Callable, serialize: Callable) -> None:
    scalar = schema.type_map[name]

    def parse_literal(node: ValueNode, variables: Any = None) -> Any:
        if isinstance(node, StringValueNode | IntValueNode | FloatValueNode):
            return parse_value(node.value)
        raise GraphQLError(f"{name} cannot represent a {node.kind} literal")

    # graphql-core 3.3's names for parse_value, parse_literal and serialize.
    scalar.coerce_input_value = parse_value  # type: ignore[attr-defined]
    scalar.coerce_input_literal = parse_literal  # type: ignore[attr-defined]
    scalar.coerce_output_value = serialize  # type: ignore[attr-defined]


def _parse_datetime(value: Any) -> datetime:
    if not isinstance(value, str):
        raise GraphQLError(f"DateTime must be an ISO 8601 string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise GraphQLError(f"Invalid DateTime {value!r}") from error
    if parsed.tzinfo is None:
        raise GraphQLError(f"DateTime {value!r} has no time zone")
    return parsed.astimezone(UTC)


def _write_datetime(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise GraphQLError(f"Decimal must be a string or number, got {value!r}")
    try:
        parsed = Decimal(str(value))
    except InvalidOperation as error:
        raise GraphQLError(f"Invalid Decimal {value!r}") from error
    if not parsed.is_finite():
        raise GraphQLError(f"Invalid Decimal {value!r}")
    return parsed


def _parse_unsigned(value: Any) -> int:
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise GraphQLError(f"UnsignedInt64 must be a string of base-10 digits, got {value!r}")


def _operation(document: Any, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name and o.name.value == name), None)


class _Coster:
    """Requested (no data) or actual (with the result's data) cost of one operation."""

    def __init__(self, schema: GraphQLSchema, fragments: dict, variables: dict) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def operation(self, operation: OperationDefinitionNode, data: dict | None = None) -> int:
        if operation.operation == OperationType.MUTATION:
            return MUTATION_COST * sum(1 for _ in self._fields(operation.selection_set, None))
        root = self.schema.query_type
        assert root is not None
        return self._selection(operation.selection_set, root, data, top=True)

    def _fields(self, selection_set: SelectionSetNode, type_name: str | None) -> Iterable[FieldNode]:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                yield selection
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition.name.value if selection.type_condition else None
                if type_name is None or condition in (None, type_name):
                    yield from self._fields(selection.selection_set, type_name)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments[selection.name.value]
                if type_name is None or fragment.type_condition.name.value == type_name:
                    yield from self._fields(fragment.selection_set, type_name)

    def _selection(self, selection_set: SelectionSetNode, parent: Any, data: Any, top: bool = False) -> int:
        if isinstance(parent, GraphQLUnionType):
            typename = data.get("__typename") if isinstance(data, dict) else None
            options = [typename] if typename else [t.name for t in parent.types]
            return max((self._object(selection_set, self.schema.type_map[name], data) for name in options), default=0)
        return self._object(selection_set, parent, data, top)

    def _object(self, selection_set: SelectionSetNode, parent: Any, data: Any, top: bool = False) -> int:
        assert isinstance(parent, GraphQLObjectType)
        total = 0 if top else 1
        for node in self._fields(selection_set, parent.name):
            if node.name.value == "__typename":
                continue
            definition = parent.fields[node.name.value]
            named = get_named_type(definition.type)
            if is_leaf_type(named) or node.selection_set is None:
                continue
            key = node.alias.value if node.alias else node.name.value
            value = data.get(key) if isinstance(data, dict) else None
            if named.name.endswith("Connection"):
                total += self._connection(node, named, value)
            elif isinstance(value, list):
                total += sum(self._selection(node.selection_set, named, item) for item in value) or 1
            else:
                if data is not None and value is None:
                    continue  # a null object costs nothing once known
                total += self._selection(node.selection_set, named, value)
        return total

    def _connection(self, node: FieldNode, connection: Any, data: Any) -> int:
        size = self._argument(node, "first") or self._argument(node, "last") or 0
        nodes_data = data.get("nodes") if isinstance(data, dict) else None
        count = len(nodes_data) if isinstance(nodes_data, list) else size
        per_node = 0
        assert node.selection_set is not None
        for child in self._fields(node.selection_set, connection.name):
            if child.name.value in ("nodes", "edges") and child.selection_set is not None:
                item_type = get_named_type(connection.fields[child.name.value].type)
                if child.name.value == "edges":
                    per_node += 1
                else:
                    sample = nodes_data[0] if isinstance(nodes_data, list) and nodes_data else None
                    per_node += self._selection(child.selection_set, item_type, sample)
        return 2 + count * max(per_node, 1)

    def _argument(self, node: FieldNode, name: str) -> int | None:
        for argument in node.arguments or ():
            if argument.name.value == name:
                if isinstance(argument.value, VariableNode):
                    value = self.variables.get(argument.value.name.value)
                else:
                    value = value_from_ast(argument.value, GraphQLInt, self.variables)
                return value if isinstance(value, int) else None
        return None


# ----------------------------------------------------------------------- search syntax


def _search_terms(query: str) -> list[tuple[str | None, str]]:
    """`field:value` and bare terms of Shopify's search syntax (AND implied).

    Values are bare names or strings quoted with ' or "; a backslash escapes the next
    character (https://shopify.dev/docs/api/usage/search-syntax)."""
    terms: list[tuple[str | None, str]] = []
    position = 0
    while position < len(query):
        if query[position].isspace():
            position += 1
            continue
        token, position = _read_value(query, position)
        if position < len(query) and query[position] == ":":
            value, position = _read_value(query, position + 1)
            terms.append((token, value))
        elif token in ("OR", "NOT"):
            raise GraphQLError(f"The stand-in's search supports AND only, not {token}")
        elif token != "AND":
            terms.append((None, token))
    return terms


def _read_value(query: str, position: int) -> tuple[str, int]:
    out: list[str] = []
    quote = query[position] if query[position] in "'\"" else None
    if quote:
        position += 1
    while position < len(query):
        char = query[position]
        if char == "\\" and position + 1 < len(query):
            out.append(query[position + 1])
            position += 2
            continue
        if quote and char == quote:
            return "".join(out), position + 1
        if not quote and (char.isspace() or char == ":"):
            break
        out.append(char)
        position += 1
    if quote:
        raise GraphQLError(f"Unterminated quoted value in search query {query!r}")
    return "".join(out), position


# ------------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    admin: ShopifyAdmin
    protocol_version = "HTTP/1.1"  # keep-alive, as Shopify offers
    disable_nagle_algorithm = True  # headers and body leave at once, not 40 ms apart

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path.startswith("/_standin/"):
            self._standin(body)
            return
        if self.admin.latency:
            time.sleep(self.admin.latency)
        headers = {key.lower(): value for key, value in self.headers.items()}
        status, answer = self.admin.answer(self.path, headers, body)
        self._send(status, answer)

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/_standin/"):
            self._standin(b"")
            return
        self._send(404, {"errors": "Not Found"})

    def _standin(self, body: bytes) -> None:
        """Inspection for a test in another process (not part of Shopify's API)."""
        admin = self.admin
        if self.path == "/_standin/codes":
            self._send(200, {"codes": sorted(admin.codes())})
        elif self.path == "/_standin/stats":
            stats = admin.stats
            self._send(200, {"requests": stats.requests, "throttled": stats.throttled,
                             "lowest_available": None if stats.lowest_available == float("inf") else stats.lowest_available,
                             "bulk_add_sizes": stats.bulk_add_sizes, "mutations": dict(stats.mutations)})
        elif self.path == "/_standin/checkout":
            request = json.loads(body or b"{}")
            try:
                total = admin.checkout(request["code"], request["lines"])
            except CheckoutRefused as refused:
                self._send(200, {"refused": refused.reason})
                return
            self._send(200, {"total": str(total)})
        else:
            self._send(404, {"errors": "Not Found"})

    def _send(self, status: int, answer: dict) -> None:
        payload = json.dumps(answer, default=str).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


# -------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.standins.shopify_admin",
        description="Serve the Shopify GraphQL Admin API stand-in until interrupted.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before each answer")
    parser.add_argument("--bucket", type=float, default=1000, help="cost bucket size (points)")
    parser.add_argument("--restore", type=float, default=100, help="points restored per second")
    parser.add_argument("--bulk-delay-ms", type=float, default=50, help="time a bulk job takes")
    parser.add_argument("--token", default="shpat_standin", help="the access token to accept")
    parser.add_argument("--currency", default="USD", help="the shop's currency")
    parser.add_argument("--shop-name", default="Glow")
    parser.add_argument("--domain", default="glow-us.myshopify.com")
    parser.add_argument("--path-version", default=SCHEMA_VERSION,
                        help="the Admin API version in the endpoint's path (as a shops file's api_url names it)")
    parser.add_argument("--seed-sku", action="append", default=[], metavar="SKU=PRICE",
                        help="a product variant to seed (repeatable)")
    parser.add_argument("--seed-file", help='JSON {"currency": "USD", "variants": {"SKU": "PRICE", ...}}')
    args = parser.parse_args(argv)
    seeds: dict[str, str] = {}
    currency = args.currency
    if args.seed_file:
        loaded = json.loads(Path(args.seed_file).read_text(encoding="utf-8"))
        currency = loaded.get("currency", currency)
        seeds.update(loaded.get("variants", {}))
    for pair in args.seed_sku:
        sku, separator, price = pair.rpartition("=")
        if not separator or not sku:
            parser.error(f"--seed-sku needs SKU=PRICE, got {pair!r}")
        seeds[sku] = price
    admin = ShopifyAdmin(token=args.token, shop_name=args.shop_name, domain=args.domain, currency=currency,
                         bucket=args.bucket, restore=args.restore, latency=args.latency_ms / 1000,
                         bulk_delay=args.bulk_delay_ms / 1000, port=args.port, path_version=args.path_version)
    for sku, price in seeds.items():
        admin.seed_variant(sku, price)
    admin.start()
    print(admin.url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    admin.stop()


if __name__ == "__main__":
    main()
