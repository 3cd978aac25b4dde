"""Shopify: Encore's codes as working discount codes, through the GraphQL Admin API.

One instance per shop per process. Codes of one `DiscountShape` share one code
discount whose title is the shape's key: the first code creates it, the rest go in
with `discountRedeemCodeBulkAdd` (250 per call), and a code counts as synced only
once its bulk creation is done. A code the shop already holds (`TAKEN`) is looked up
with `codeDiscountNodeByCode` and counts as synced when its discount carries our
title, so a retried batch finds what a crashed one made. Calls are paced by a local
estimate of the shop's cost bucket (each answer's `extensions.cost.throttleStatus`)
so that the bucket keeps a reserve; a `THROTTLED` answer waits for the points it
lacks and tries again (the documents, their costs and the transport:
platforms/shopify_api.py). Which documented fields this relies on, and why:
platforms/SHOPIFY.md.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import requests

from coupons.money import round_to_minor_unit
from platforms.base import KEY_PREFIX, DiscountShape, PlatformError, SyncOutcome
from platforms.shopify_api import (
    API_VERSION, AdminApi, BULK_ADD, BULK_ADD_LIMIT, BULK_RESULTS, BULK_RESULTS_PAGE, BULK_STATUS, CREATE,
    DELETE_CODES, DISCOUNTS_BY_TITLE, JOB, OWNER_BATCH, OWNER_BATCH_WITH_IDS, SHOP, VARIANTS_BY_SKU, VARIANT_PAGE,
    everyone_may_use, is_taken_code, messages,
)


@dataclass(frozen=True)
class _Variant:
    id: str
    sku: str
    price: Decimal


@dataclass(frozen=True)
class _Owner:
    """The code discount a code belongs to in the shop."""

    discount_id: str
    title: str
    redeem_id: str | None = None


class _Tally:
    """Per-code results of one call; codes are matched case-insensitively, as Shopify does."""

    def __init__(self, codes: Sequence[str]) -> None:
        self.codes = list(dict.fromkeys(codes))
        self._by_lower = {code.lower(): code for code in self.codes}
        self._decided: set[str] = set()
        self.synced: set[str] = set()
        self.transient: dict[str, str] = {}
        self.permanent: dict[str, str] = {}

    def open(self) -> list[str]:
        return [code for code in self.codes if code not in self._decided]

    def _undecided(self, code: str) -> str | None:
        own = self._by_lower.get(code.lower())
        return None if own is None or own in self._decided else own

    def sync(self, code: str) -> None:
        own = self._undecided(code)
        if own is not None:
            self._decided.add(own)
            self.synced.add(own)

    def fail(self, code: str, reason: str, *, transient: bool) -> None:
        own = self._undecided(code)
        if own is not None:
            self._decided.add(own)
            (self.transient if transient else self.permanent)[own] = reason

    def fail_open(self, reason: str, *, transient: bool) -> None:
        for code in self.open():
            self.fail(code, reason, transient=transient)

    def outcome(self) -> SyncOutcome:
        self.fail_open("Shopify did not confirm the code", transient=True)
        return SyncOutcome(frozenset(self.synced), dict(self.transient), dict(self.permanent))


class ShopifyPlatform:
    """The ShopPlatform for one Shopify shop (see the module docstring).

    `domain` is the shop's myshopify domain; `api_url` overrides the endpoint built
    from it (tests point it at a stand-in); `token` is the Admin API access token.
    `timeout` applies to each HTTP request, `bulk_timeout` to waiting for Shopify's
    asynchronous bulk jobs. `clock` and `sleep` are injectable for tests.
    """

    def __init__(
        self,
        domain: str,
        token: str,
        *,
        api_url: str | None = None,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = (5.0, 30.0),
        bulk_timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_throttle_retries: int = 5,
    ) -> None:
        domain = domain.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
        if not domain and not api_url:
            raise ValueError("a Shopify shop needs its myshopify domain (or an api_url)")
        if not token:
            raise ValueError("a Shopify shop needs an Admin API access token")
        self.domain = domain
        self.api = AdminApi(api_url or f"https://{domain}/admin/api/{API_VERSION}/graphql.json", token,
                            session=session or requests.Session(), timeout=timeout, clock=clock, sleep=sleep,
                            max_throttle_retries=max_throttle_retries)
        self.api_url = self.api.api_url
        self._bulk_timeout = bulk_timeout
        self._clock = clock
        self._sleep = sleep
        self._variants: dict[str, _Variant] = {}
        self._discounts: dict[str, str] = {}  # shape key -> DiscountCodeNode id
        self._currency: str | None = None

    # -- the ShopPlatform interface ---------------------------------------------------

    def check(self) -> str:
        shop = self.api.call("EncoreShop", SHOP, {})["shop"]
        self._currency = shop["currencyCode"]
        return f"{shop['name']} ({shop['myshopifyDomain']}, {shop['currencyCode']}, Admin API {self.api.version})"

    def create_codes(self, shape: DiscountShape, codes: Sequence[str]) -> SyncOutcome:
        tally = _Tally(codes)
        if not tally.codes:
            return tally.outcome()
        try:
            kind, base = self._discount_input(shape)
            discount_id = self._discount_for(shape.key(), kind, base, tally)
            if discount_id is not None and tally.open():
                self._bulk_add(shape.key(), discount_id, tally)
        except PlatformError as error:
            tally.fail_open(error.message, transient=error.transient)
        return tally.outcome()

    def disable_codes(self, codes: Sequence[str]) -> SyncOutcome:
        tally = _Tally(codes)
        try:
            self._delete(tally)
        except PlatformError as error:
            tally.fail_open(error.message, transient=error.transient)
        return tally.outcome()

    # -- what the discount looks like -------------------------------------------------

    def _discount_input(self, shape: DiscountShape) -> tuple[str, dict]:
        """The discount's kind ("basic" or "bxgy") and its input, without `code`."""
        variant = self._variant(shape.sku)
        items = {"products": {"productVariantsToAdd": [variant.id]}}
        base: dict[str, Any] = {
            "title": shape.key(),
            "startsAt": _iso(shape.starts_at),
            "endsAt": _iso(shape.expires_at),
            "usageLimit": 1,
            "appliesOncePerCustomer": False,
            "combinesWith": {"orderDiscounts": False, "productDiscounts": False, "shippingDiscounts": False},
            **everyone_may_use(self.api.version),
        }
        if shape.offer_type == "refill":
            amount = self._refill_amount(shape, variant)
            base["customerGets"] = {
                "value": {"discountAmount": {"amount": str(amount), "appliesOnEachItem": False}},
                "items": items,
            }
            return "basic", base
        share = _share(shape)
        if shape.offer_type == "percent_off":
            base["customerGets"] = {"value": {"percentage": share}, "items": items}
            return "basic", base
        base["customerBuys"] = {"value": {"quantity": "1"}, "items": items}
        base["customerGets"] = {
            "value": {"discountOnQuantity": {"quantity": "1", "effect": {"percentage": share}}},
            "items": items,
        }
        base["usesPerOrderLimit"] = 1
        return "bxgy", base

    def _refill_amount(self, shape: DiscountShape, variant: _Variant) -> Decimal:
        """Variant price - offer price: what comes off one unit, once per order."""
        if shape.price is None:
            raise PlatformError(f"the refill offer on {shape.sku!r} has no price", transient=False)
        currency = self._shop_currency()
        if shape.currency.upper() != currency:
            raise PlatformError(
                f"the shop sells in {currency} but the offer is in {shape.currency.upper()}: "
                "Encore does not convert a fixed amount between currencies", transient=False)
        amount = round_to_minor_unit(variant.price - shape.price, currency)
        if amount <= 0:
            raise PlatformError(
                f"the shop's price for SKU {shape.sku!r} ({currency} {variant.price}) is not above the offer's "
                f"price ({currency} {shape.price}): there is nothing to take off", transient=False)
        return amount

    def _shop_currency(self) -> str:
        if self._currency is None:
            self.check()
        assert self._currency is not None
        return self._currency

    def _variant(self, sku: str) -> _Variant:
        """The one product variant carrying `sku` exactly (cached for this instance)."""
        cached = self._variants.get(sku)
        if cached is not None:
            return cached
        exact: list[dict] = []
        after: str | None = None
        while True:
            page = self.api.call("EncoreVariantsBySku", VARIANTS_BY_SKU,
                              {"first": VARIANT_PAGE, "query": f"sku:{_search_value(sku)}", "after": after})["productVariants"]
            exact += [node for node in page["nodes"] if node.get("sku") == sku]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        if not exact:
            raise PlatformError(f"no product variant in the shop has SKU {sku!r}", transient=False)
        if len(exact) > 1:
            raise PlatformError(
                f"SKU {sku!r} is on {len(exact)} product variants in the shop; Encore needs it on exactly one",
                transient=False)
        try:
            price = Decimal(str(exact[0]["price"]))
        except (InvalidOperation, KeyError) as error:
            raise PlatformError(f"Shopify gave no readable price for SKU {sku!r}", transient=True) from error
        variant = _Variant(id=exact[0]["id"], sku=sku, price=price)
        self._variants[sku] = variant
        return variant

    # -- the discount that carries the codes ------------------------------------------

    def _discount_for(self, key: str, kind: str, base: dict, tally: _Tally) -> str | None:
        """Our discount for this shape: cached, found by its title, or created with
        the first open code (a code Shopify already holds in our discount also finds it)."""
        cached = self._discounts.get(key)
        if cached is not None:
            return cached
        found = self._find_discount(key)
        if found is not None:
            self._discounts[key] = found
            return found
        operation, document, mutation = CREATE[kind]
        for code in tally.open():
            payload = self.api.call(operation, document, {"input": {**base, "code": code}})[mutation]
            node = payload.get("codeDiscountNode")
            errors = payload.get("userErrors") or []
            if node and not errors:
                tally.sync(code)
                self._discounts[key] = node["id"]
                return node["id"]
            if errors and all(is_taken_code(error) for error in errors):
                owner = self._owners([code]).get(code)
                if owner is not None and owner.title == key:
                    tally.sync(code)
                    self._discounts[key] = owner.discount_id
                    return owner.discount_id
                tally.fail(code, _elsewhere(owner), transient=owner is None)
                continue
            raise PlatformError("Shopify refused the discount: " + messages(errors), transient=False)
        return None

    def _find_discount(self, key: str) -> str | None:
        """The DiscountCodeNode id of a discount titled `key`, through one of its codes
        (discountNodes lists discounts by title; codeDiscountNodeByCode gives the id
        that discountRedeemCodeBulkAdd takes)."""
        nodes = self.api.call("EncoreDiscountsByTitle", DISCOUNTS_BY_TITLE,
                           {"query": f"title:{_search_value(key)}"})["discountNodes"]["nodes"]
        for node in nodes:
            discount = node.get("discount") or {}
            if discount.get("title") != key:
                continue
            for redeem in (discount.get("codes") or {}).get("nodes") or []:
                owner = self._owners([redeem["code"]]).get(redeem["code"])
                if owner is not None and owner.title == key:
                    return owner.discount_id
        return None

    # -- codes in bulk ----------------------------------------------------------------

    def _bulk_add(self, key: str, discount_id: str, tally: _Tally) -> None:
        started: list[tuple[str, list[str]]] = []
        for chunk in _chunks(tally.open(), BULK_ADD_LIMIT):
            payload = self.api.call("EncoreBulkAdd", BULK_ADD, {
                "discountId": discount_id, "codes": [{"code": code} for code in chunk]})["discountRedeemCodeBulkAdd"]
            errors = payload.get("userErrors") or []
            bulk = payload.get("bulkCreation")
            if errors or not bulk:
                if any("discountId" in (error.get("field") or []) for error in errors):
                    # The merchant deleted our discount: forget it, a retry makes a new one.
                    self._discounts.pop(key, None)
                    reason = "the shop's discount for these codes is gone; it will be made again"
                    for code in chunk:
                        tally.fail(code, reason, transient=True)
                else:
                    for code in chunk:
                        tally.fail(code, "Shopify refused the codes: " + messages(errors), transient=False)
                continue
            started.append((bulk["id"], chunk))
        finished, unfinished = self._wait_for(
            [bulk_id for bulk_id, _chunk in started],
            lambda bulk_id: self.api.call("EncoreBulkStatus", BULK_STATUS, {"id": bulk_id})[
                "discountRedeemCodeBulkCreation"])
        for bulk_id, chunk in started:
            if bulk_id in unfinished:
                for code in chunk:
                    tally.fail(code, f"Shopify's bulk creation was not done after {self._bulk_timeout:g} s",
                               transient=True)
                continue
            status = finished[bulk_id]
            if status is None:
                for code in chunk:
                    tally.fail(code, f"Shopify lost the bulk creation {bulk_id}", transient=True)
            elif not status.get("failedCount"):
                for code in chunk:
                    tally.sync(code)
            else:
                self._bulk_results(key, bulk_id, tally)

    def _bulk_results(self, key: str, bulk_id: str, tally: _Tally) -> None:
        """Per-code results of a bulk creation with failures; a code that failed
        because the shop holds it already is ours when its discount has our title."""
        failed: dict[str, list[dict]] = {}
        after: str | None = None
        while True:
            codes = self.api.call("EncoreBulkResults", BULK_RESULTS, {"id": bulk_id, "first": BULK_RESULTS_PAGE, "after": after})[
                "discountRedeemCodeBulkCreation"]["codes"]
            for node in codes["nodes"]:
                if node.get("errors"):
                    failed[node["code"]] = node["errors"]
                else:
                    tally.sync(node["code"])
            if not codes["pageInfo"]["hasNextPage"]:
                break
            after = codes["pageInfo"]["endCursor"]
        taken = [code for code, errors in failed.items() if all(is_taken_code(e) for e in errors)]
        owners = self._owners(taken)
        for code, errors in failed.items():
            if code not in owners:
                tally.fail(code, "Shopify refused the code: " + messages(errors), transient=False)
            elif (owner := owners[code]) is not None and owner.title == key:
                tally.sync(code)
            else:
                tally.fail(code, _elsewhere(owner), transient=owner is None)

    def _owners(self, codes: Sequence[str], *, redeem_ids: bool = False) -> dict[str, _Owner | None]:
        """The discount each code belongs to (None: not in the shop), many per request."""
        owners: dict[str, _Owner | None] = {}
        for chunk in _chunks(list(codes), OWNER_BATCH_WITH_IDS if redeem_ids else OWNER_BATCH):
            declarations, fields, variables = [], [], {}
            for index, code in enumerate(chunk):
                variables[f"c{index}"] = code
                declarations.append(f"$c{index}: String!")
                listing = ""
                if redeem_ids:
                    variables[f"q{index}"] = _search_value(code)
                    declarations.append(f"$q{index}: String!")
                    listing = f" codes(first: 5, query: $q{index}) {{ nodes {{ id code }} }}"
                fields.append(
                    f"c{index}: codeDiscountNodeByCode(code: $c{index}) {{ id codeDiscount {{ __typename"
                    f" ... on DiscountCodeBasic {{ title{listing} }} ... on DiscountCodeBxgy {{ title{listing} }} }} }}")
            name = "EncoreCodeOwnersWithIds" if redeem_ids else "EncoreCodeOwners"
            query = f"query {name}({', '.join(declarations)}) {{\n  " + "\n  ".join(fields) + "\n}"
            data = self.api.call(f"{name}/{len(chunk)}", query, variables,
                              default_cost=len(chunk) * (9 if redeem_ids else 2))
            for index, code in enumerate(chunk):
                node = data.get(f"c{index}")
                if node is None:
                    owners[code] = None
                    continue
                discount = node.get("codeDiscount") or {}
                listed = (discount.get("codes") or {}).get("nodes") or []
                redeem_id = next((item["id"] for item in listed if item["code"].lower() == code.lower()), None)
                owners[code] = _Owner(node["id"], discount.get("title") or "", redeem_id)
        return owners

    # -- removing codes ---------------------------------------------------------------

    def _delete(self, tally: _Tally) -> None:
        by_discount: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for code, owner in self._owners(tally.open(), redeem_ids=True).items():
            if owner is None:
                tally.sync(code)
            elif not owner.title.startswith(KEY_PREFIX):
                tally.fail(code, f"the code is in the shop's discount {owner.title!r}, which Encore did not make: "
                                 "left as it is", transient=False)
            elif owner.redeem_id is None:
                tally.fail(code, "Shopify found the code but did not list it in its discount", transient=True)
            else:
                by_discount[owner.discount_id].append((code, owner.redeem_id))
        started: list[tuple[str, list[str]]] = []
        for discount_id, entries in by_discount.items():
            for chunk in _chunks(entries, BULK_ADD_LIMIT):
                payload = self.api.call("EncoreDeleteCodes", DELETE_CODES, {
                    "discountId": discount_id, "ids": [redeem_id for _code, redeem_id in chunk]})[
                    "discountCodeRedeemCodeBulkDelete"]
                errors = payload.get("userErrors") or []
                if errors or not payload.get("job"):
                    for code, _redeem_id in chunk:
                        tally.fail(code, "Shopify refused to delete the code: " + messages(errors), transient=False)
                    continue
                started.append((payload["job"]["id"], [code for code, _redeem_id in chunk]))
        _finished, unfinished = self._wait_for(
            [job_id for job_id, _codes in started],
            lambda job_id: self.api.call("EncoreJob", JOB, {"id": job_id})["job"])
        deleted: list[str] = []
        for job_id, codes in started:
            if job_id in unfinished:
                for code in codes:
                    tally.fail(code, f"Shopify's deletion job was not done after {self._bulk_timeout:g} s",
                               transient=True)
            else:
                deleted += codes
        for code, owner in self._owners(deleted).items():
            if owner is None:
                tally.sync(code)
            else:
                tally.fail(code, "the code is still in the shop after its deletion job", transient=True)

    # -- waiting for asynchronous jobs ------------------------------------------------

    def _wait_for(self, ids: list[str], status: Callable[[str], dict | None]) -> tuple[dict[str, dict | None], set[str]]:
        """Poll each job until it is done (a job Shopify does not know counts as done,
        with None), or until `bulk_timeout`; returns (finished, unfinished ids)."""
        finished: dict[str, dict | None] = {}
        pending = list(ids)
        deadline = self._clock() + self._bulk_timeout
        interval = 0.05
        while pending:
            still: list[str] = []
            for job_id in pending:
                state = status(job_id)
                if state is None or state.get("done"):
                    finished[job_id] = state
                else:
                    still.append(job_id)
            pending = still
            if not pending or self._clock() >= deadline:
                break
            self._sleep(min(interval, max(0.0, deadline - self._clock())))
            interval = min(interval * 2, 2.0)
        return finished, set(pending)

    # -- one GraphQL call -------------------------------------------------------------


# -------------------------------------------------------------------------- helpers


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _share(shape: DiscountShape) -> float:
    """The shape's percentage as Shopify's 0-1 fraction."""
    if shape.percent is None or not Decimal(0) < shape.percent <= Decimal(100):
        raise PlatformError(f"the {shape.offer_type} offer on {shape.sku!r} needs a percentage between 0 and 100",
                            transient=False)
    return float(shape.percent / Decimal(100))


def _search_value(text: str) -> str:
    """`text` as one quoted value of Shopify's search syntax (quote and backslash escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _chunks(items: Sequence, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield list(items[start: start + size])


def _elsewhere(owner: _Owner | None) -> str:
    if owner is None:
        return "Shopify said the code was taken but could not find it"
    return f"the code already exists in the shop, in the discount {owner.title!r}"
