"""Shopify's GraphQL Admin API as Encore uses it: the pinned version, the documents it
sends (each named, so Shopify's logs and the stand-in can tell them apart), what each
costs before Shopify says, the error codes worth trying again, and the local estimate
of the shop's cost bucket that paces calls. The platform itself is platforms/shopify.py;
the documented fields this relies on are in platforms/SHOPIFY.md."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import requests

from coupons.shops import SHOPIFY_API_VERSION
from platforms.base import PlatformError

API_VERSION = SHOPIFY_API_VERSION
"""The Admin API version spoken when the shop's `api_url` names none (pinned in `coupons.shops`)."""

CONTEXT_SINCE = "2025-10"
"""The first version whose discount inputs take `context`; older ones only take the
deprecated `customerSelection` (https://shopify.dev/changelog/discount-eligibility-management)."""
_URL_VERSION = re.compile(r"/admin/api/(\d{4}-\d{2}|unstable)/graphql\.json$")

TOKEN_HEADER = "X-Shopify-Access-Token"
BULK_ADD_LIMIT = 250  # discountRedeemCodeBulkAdd: "Maximum: 250 codes"
OWNER_BATCH = 50  # codeDiscountNodeByCode look-ups per request (GraphQL aliases)
OWNER_BATCH_WITH_IDS = 25
VARIANT_PAGE = 25
BULK_RESULTS_PAGE = 250

SHOP = "query EncoreShop { shop { name myshopifyDomain currencyCode } }"
VARIANTS_BY_SKU = """query EncoreVariantsBySku($first: Int!, $query: String!, $after: String) {
  productVariants(first: $first, after: $after, query: $query) {
    nodes { id sku price product { id } }
    pageInfo { hasNextPage endCursor }
  }
}"""
DISCOUNTS_BY_TITLE = """query EncoreDiscountsByTitle($query: String!) {
  discountNodes(first: 10, query: $query) {
    nodes { discount { __typename
      ... on DiscountCodeBasic { title codes(first: 1) { nodes { code } } }
      ... on DiscountCodeBxgy { title codes(first: 1) { nodes { code } } }
    } }
  }
}"""
CREATE_BASIC = """mutation EncoreCreateBasic($input: DiscountCodeBasicInput!) {
  discountCodeBasicCreate(basicCodeDiscount: $input) {
    codeDiscountNode { id }
    userErrors { code field message }
  }
}"""
CREATE_BXGY = """mutation EncoreCreateBxgy($input: DiscountCodeBxgyInput!) {
  discountCodeBxgyCreate(bxgyCodeDiscount: $input) {
    codeDiscountNode { id }
    userErrors { code field message }
  }
}"""
BULK_ADD = """mutation EncoreBulkAdd($discountId: ID!, $codes: [DiscountRedeemCodeInput!]!) {
  discountRedeemCodeBulkAdd(discountId: $discountId, codes: $codes) {
    bulkCreation { id }
    userErrors { code field message }
  }
}"""
BULK_STATUS = """query EncoreBulkStatus($id: ID!) {
  discountRedeemCodeBulkCreation(id: $id) { done codesCount importedCount failedCount }
}"""
BULK_RESULTS = """query EncoreBulkResults($id: ID!, $first: Int!, $after: String) {
  discountRedeemCodeBulkCreation(id: $id) {
    codes(first: $first, after: $after) {
      nodes { code errors { code field message } }
      pageInfo { hasNextPage endCursor }
    }
  }
}"""
DELETE_CODES = """mutation EncoreDeleteCodes($discountId: ID!, $ids: [ID!]) {
  discountCodeRedeemCodeBulkDelete(discountId: $discountId, ids: $ids) {
    job { id done }
    userErrors { code field message }
  }
}"""
JOB = "query EncoreJob($id: ID!) { job(id: $id) { id done } }"

# What a call costs before Shopify has told us (its requestedQueryCost replaces these):
# the documented defaults, an object 1, a connection 2 + first x one node, a mutation 10.
DEFAULT_COST = {
    "EncoreShop": 1,
    "EncoreVariantsBySku": 2 + VARIANT_PAGE * 2,
    "EncoreDiscountsByTitle": 2 + 10 * 5,
    "EncoreCreateBasic": 10,
    "EncoreCreateBxgy": 10,
    "EncoreBulkAdd": 10,
    "EncoreBulkStatus": 1,
    "EncoreBulkResults": 3 + BULK_RESULTS_PAGE * 2,
    "EncoreDeleteCodes": 10,
    "EncoreJob": 1,
}

CREATE = {  # discount kind -> (operation, document, mutation field)
    "basic": ("EncoreCreateBasic", CREATE_BASIC, "discountCodeBasicCreate"),
    "bxgy": ("EncoreCreateBxgy", CREATE_BXGY, "discountCodeBxgyCreate"),
}

TRANSIENT_GRAPHQL_CODES = {"THROTTLED", "INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT"}


class CostPacer:
    """A local estimate of the shop's cost bucket, so that calls wait instead of
    draining it.

    Shopify restores `restoreRate` points per second up to `maximumAvailable`, and a
    call needs its requested cost in the bucket before it runs. Before each call the
    pacer books the call's expected cost and says how long to wait so that the bucket
    keeps a reserve after it (10 % of its size, at least `min_reserve`). Each answer's
    `throttleStatus` replaces the estimate: other workers on the same shop spend from
    the same bucket, and the reserve absorbs what they spent since.
    """

    def __init__(self, clock: Callable[[], float], *, reserve_ratio: float = 0.1, min_reserve: float = 20.0) -> None:
        self._clock = clock
        self._reserve_ratio = reserve_ratio
        self._min_reserve = min_reserve
        self._lock = threading.Lock()
        self._known = False
        self._maximum = 0.0
        self._available = 0.0
        self._restore = 0.0
        self._stamp = 0.0

    def book(self, cost: float) -> float:
        """Seconds to wait before a call of `cost` points; the points count as spent."""
        with self._lock:
            if not self._known or self._restore <= 0:
                return 0.0
            now = self._clock()
            available = min(self._maximum, self._available + (now - self._stamp) * self._restore)
            needed = min(cost + self.reserve(), self._maximum)
            wait = max(0.0, (needed - available) / self._restore)
            self._available = available - cost
            self._stamp = now
            return wait

    def reserve(self) -> float:
        return max(self._min_reserve, self._reserve_ratio * self._maximum)

    def observe(self, throttle_status: Mapping[str, Any]) -> None:
        """Take the bucket's state from an answer's `extensions.cost.throttleStatus`."""
        try:
            maximum = float(throttle_status["maximumAvailable"])
            available = float(throttle_status["currentlyAvailable"])
            restore = float(throttle_status["restoreRate"])
        except (KeyError, TypeError, ValueError):
            return
        with self._lock:
            self._known = True
            self._maximum, self._available, self._restore = maximum, available, restore
            self._stamp = self._clock()

    def throttled_wait(self, requested: float) -> float:
        """Seconds until a throttled call of `requested` points fits with the reserve."""
        with self._lock:
            if not self._known or self._restore <= 0:
                return 1.0
            needed = min(requested + self.reserve(), self._maximum)
            return max(0.05, (needed - self._available) / self._restore)


def version_of(api_url: str) -> str:
    """The Admin API version an endpoint's path names (a shops file's `api_url` may name
    another than API_VERSION, as SPEC section 7's example does); API_VERSION when it names none."""
    found = _URL_VERSION.search(api_url.split("?", 1)[0].rstrip("/"))
    return found.group(1) if found else API_VERSION


def everyone_may_use(version: str) -> dict:
    """The discount input field that makes a code usable by every customer, in `version`'s
    terms: `context: {all: ALL}` from 2025-10, `customerSelection: {all: true}` before
    (which 2025-10 to 2027-01 still take, deprecated)."""
    if version == "unstable" or version >= CONTEXT_SINCE:
        return {"context": {"all": "ALL"}}
    return {"customerSelection": {"all": True}}


class AdminApi:
    """One shop's GraphQL endpoint: a named operation posted with the access token, paced
    by the shop's cost bucket (`CostPacer`), a THROTTLED answer waited out and retried,
    every other failure a PlatformError saying whether trying later can help."""

    def __init__(self, api_url: str, token: str, *, session: requests.Session,
                 timeout: float | tuple[float, float], clock: Callable[[], float], sleep: Callable[[float], None],
                 max_throttle_retries: int) -> None:
        self.api_url = api_url
        self.version = version_of(api_url)
        self._token = token
        self._session = session
        self._timeout = timeout
        self._sleep = sleep
        self._max_throttle_retries = max_throttle_retries
        self.pacer = CostPacer(clock)
        self._costs: dict[str, float] = {}

    def call(self, operation: str, query: str, variables: Mapping[str, Any], *, default_cost: float | None = None) -> dict:
        """Run one operation, paced by the cost bucket; THROTTLED waits and retries.
        Returns `data`; raises PlatformError for anything else that went wrong."""
        name = operation.split("/")[0]
        cost = self._costs.get(operation, default_cost if default_cost is not None else DEFAULT_COST.get(name, 50))
        for _attempt in range(self._max_throttle_retries + 1):
            wait = self.pacer.book(cost)
            if wait > 0:
                self._sleep(wait)
            answer = self._post(name, query, variables)
            cost_info = (answer.get("extensions") or {}).get("cost") or {}
            if isinstance(cost_info.get("throttleStatus"), Mapping):
                self.pacer.observe(cost_info["throttleStatus"])
            if isinstance(cost_info.get("requestedQueryCost"), int | float):
                cost = self._costs[operation] = float(cost_info["requestedQueryCost"])
            errors = answer.get("errors")
            if errors and has_code(errors, "THROTTLED"):
                self._sleep(self.pacer.throttled_wait(cost))
                continue
            if errors:
                transient = all(error_code(error) in TRANSIENT_GRAPHQL_CODES for error in as_list(errors))
                raise PlatformError(f"Shopify answered {name} with errors: {messages(as_list(errors))}",
                                    transient=transient)
            data = answer.get("data")
            if not isinstance(data, dict):
                raise PlatformError(f"Shopify answered {name} without data", transient=True)
            return data
        raise PlatformError(f"Shopify kept throttling {name} (THROTTLED {self._max_throttle_retries + 1} times)",
                            transient=True)

    def _post(self, operation: str, query: str, variables: Mapping[str, Any]) -> dict:
        try:
            response = self._session.post(
                self.api_url,
                json={"query": query, "variables": dict(variables), "operationName": operation},
                headers={TOKEN_HEADER: self._token, "Content-Type": "application/json", "Accept": "application/json"},
                timeout=self._timeout,
            )
        except requests.Timeout:
            raise PlatformError(f"Shopify did not answer in time ({self.api_url})", transient=True) from None
        except requests.RequestException as error:
            raise PlatformError(f"could not reach Shopify at {self.api_url}: {type(error).__name__}",
                                transient=True) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        status = response.status_code
        if isinstance(body, dict) and body.get("errors") and has_code(as_list(body["errors"]), "THROTTLED"):
            return body
        detail = messages(as_list(body.get("errors"))) if isinstance(body, dict) and body.get("errors") else ""
        suffix = f": {detail}" if detail else ""
        if status in (401, 403):
            raise PlatformError(f"Shopify refused the access token (HTTP {status}){suffix}", transient=False)
        if status == 402:
            raise PlatformError(f"the shop is frozen until its bill is paid (HTTP 402){suffix}", transient=False)
        if status == 404:
            raise PlatformError(f"no Admin API at {self.api_url} (HTTP 404): check the shop's domain", transient=False)
        if status == 423:
            raise PlatformError(f"the shop is locked (HTTP 423){suffix}", transient=False)
        if status in (408, 429) or status >= 500:
            raise PlatformError(f"Shopify answered HTTP {status}{suffix}", transient=True)
        if status != 200:
            raise PlatformError(f"Shopify answered HTTP {status}{suffix}", transient=False)
        if not isinstance(body, dict):
            raise PlatformError("Shopify's answer was not JSON", transient=True)
        return body


# -------------------------------------------------------------------------- errors


def as_list(errors: Any) -> list:
    if isinstance(errors, list):
        return errors
    return [errors] if errors else []


def error_code(error: Any) -> str | None:
    if isinstance(error, Mapping):
        return (error.get("extensions") or {}).get("code")
    return None


def has_code(errors: list, code: str) -> bool:
    return any(error_code(error) == code for error in errors)


def is_taken_code(error: Mapping) -> bool:
    field_path = error.get("field") or []
    return error.get("code") == "TAKEN" and (not field_path or field_path[-1] == "code")


def messages(errors: Sequence) -> str:
    parts = []
    for error in errors:
        if isinstance(error, Mapping):
            message = str(error.get("message") or error.get("code") or "unknown error")
            field_path = error.get("field")
            parts.append(f"{'.'.join(field_path)}: {message}" if field_path else message)
        else:
            parts.append(str(error))
    return "; ".join(parts) or "no reason given"
