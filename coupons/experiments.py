"""Experiments (SPEC section 9): a control group held out, the rest split between variants.

Pure: a market's or a campaign's table in, an `Experiment` out; (shop, customer,
experiment) in, the customer's group out. No clock, no database, no arrival order.

The file shape, in a market table of the markets file or at the top of a campaign file:

    holdout = 0.10                 # share of the customers held out (the "control" group)
    variants = [                   # weights: shares of the customers not held out
      { name = "depth10", weight = 0.5, depth_percent = "10" },
      { name = "depth20", weight = 0.5, depth_percent = "20", framing = "loyalty" },
    ]

Decisions where the SPEC is silent:

- **Weights are exact decimals that must add up to exactly 1** (0.3333 + 0.3333 + 0.3334,
  not three thirds). They are read as written (a TOML float's shortest text, so 0.1 is 0.1),
  never normalised: a typo such as weights of 0.5 and 0.6 is an error naming the sum, not a
  silent 45/55 split. `holdout` is a share from 0 (inclusive) to 1 (exclusive) in steps of
  0.0001, one bucket.
- **Without `variants`**, the customers not held out form one group named "treatment" that
  gets the market's (or campaign's) own offer: a pure holdout test. `holdout = 0` without
  variants is no experiment at all (a seller's way to switch it off).
- **Identity**: `Experiment.id` is the owner (`market:<name>` or `campaign:<name>`) plus a
  hash of the canonical definition (holdout, and each variant's name, weight and changes, in
  file order). A customer keeps their group across streams while that definition stays the
  same; any change to it (a weight, a depth, a new variant, the order of the variants) is a
  new experiment and re-draws everyone. Optimizely keeps users in place when only traffic is
  re-allocated and warns that a reconfigured running experiment may re-bucket them; here a
  change always re-draws, so a group never mixes customers assigned under two definitions
  and the review compares like with like. Comments, key order and "0.10" versus "0.1" do not
  change the id.
- **Assignment**: SHA-256 of the JSON array `[shop, customer_id, experiment_id]` (an
  unambiguous encoding: no separator can be forged by an id), its first 8 bytes as an
  unsigned big-endian integer, modulo 10,000. Optimizely hashes user id + experiment id with
  MurmurHash3 into 10,000 buckets; SHA-256 gives the same uniform, stable buckets from the
  standard library (no compiled dependency to pin), and Python's randomised `hash()` is never
  used. Buckets [0, holdout x 10,000) are "control"; the rest are split by cumulative weight.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_FLOOR, Decimal, InvalidOperation

from .errors import ConfigError
from .model import Framing, Offer

BUCKETS = 10_000
CONTROL = "control"
"""The held-out group's name: no message, no code."""
TREATMENT = "treatment"
"""The one group of customers not held out when the file lists no variants."""
FRAMINGS: tuple[str, ...] = ("urgency", "loyalty")
_VARIANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
"""Meta's rule for a WhatsApp template name: lowercase letters, digits, underscores, ≤ 512."""
_VARIANT_KEYS = ("name", "weight", "depth_percent", "framing", "template")


class ExperimentFieldError(ConfigError, ValueError):
    """A bad `holdout` or `variants` entry; `field` is relative to the owning table
    (`variants[1].weight`), so the markets and campaign loaders can prefix it."""

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


@dataclass(frozen=True)
class Variant:
    """One group of the customers not held out, and what it changes (None: unchanged)."""

    name: str
    weight: Decimal
    depth_percent: Decimal | None = None
    framing: Framing | None = None
    template: str | None = None


@dataclass(frozen=True)
class Experiment:
    owner: str  # "market:<name>" or "campaign:<name>"
    holdout: Decimal
    variants: tuple[Variant, ...]

    @property
    def id(self) -> str:
        """`<owner>@<12 hex digits>`: stable while the definition is unchanged."""
        return f"{self.owner}@{hashlib.sha256(_canonical(self).encode()).hexdigest()[:12]}"

    @property
    def group_names(self) -> tuple[str, ...]:
        """Every group a customer can land in, control first when there is one."""
        names = tuple(variant.name for variant in self.variants)
        return ((CONTROL,) + names) if self.holdout else names


@dataclass(frozen=True)
class Assignment:
    """A customer's group in one experiment; `variant` is "control" for the held-out group."""

    experiment_id: str
    variant: str
    bucket: int
    changes: Variant | None  # None for the control group

    @property
    def held_out(self) -> bool:
        return self.variant == CONTROL


@dataclass(frozen=True)
class Treatment:
    """What a customer of a group is offered: the offer, its framing and the WhatsApp
    template (None: the templates file's own template for the customer's language)."""

    offer: Offer
    framing: Framing
    template: str | None


# ------------------------------------------------------------------ parsing


def _text(value: Decimal) -> str:
    """One spelling per number ("0.10" and "0.1" alike; "10" not "1E+1")."""
    return format(value.normalize(), "f")


def _canonical(experiment: Experiment) -> str:
    return json.dumps({
        "holdout": _text(experiment.holdout),
        "variants": [{"name": v.name, "weight": _text(v.weight),
                      "depth_percent": None if v.depth_percent is None else _text(v.depth_percent),
                      "framing": v.framing, "template": v.template} for v in experiment.variants],
    }, sort_keys=True, separators=(",", ":"))


def _decimal(value: object, field: str) -> Decimal:
    """A TOML number or numeric string as the exact decimal it is written as."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ExperimentFieldError(field, f"must be a number, got {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ExperimentFieldError(field, f"must be a number, got {value!r}") from None
    if not number.is_finite():
        raise ExperimentFieldError(field, f"must be a finite number, got {value!r}")
    return number


def _parse_variant(raw: object, index: int) -> Variant:
    where = f"variants[{index}]"
    if not isinstance(raw, dict):
        raise ExperimentFieldError(where, 'must be a table like { name = "depth20", weight = 0.5, depth_percent = "20" }')
    for key in raw:
        if key not in _VARIANT_KEYS:
            raise ExperimentFieldError(f"{where}.{key}", f"unknown field (expected one of {', '.join(_VARIANT_KEYS)})")
    for key in ("name", "weight"):
        if key not in raw:
            raise ExperimentFieldError(f"{where}.{key}", "required")
    name = raw["name"]
    if not isinstance(name, str) or not _VARIANT_NAME.match(name):
        raise ExperimentFieldError(f"{where}.name", "must be 1-40 characters of a-z, 0-9, '_' or '-', "
                                                    "starting with a letter or digit")
    if name == CONTROL:
        raise ExperimentFieldError(f"{where}.name", '"control" is the held-out group\'s name')
    weight = _decimal(raw["weight"], f"{where}.weight")
    if not 0 < weight <= 1:
        raise ExperimentFieldError(f"{where}.weight", f"must be a share above 0 and at most 1, got {raw['weight']!r}")
    depth = None
    if "depth_percent" in raw:
        depth = _decimal(raw["depth_percent"], f"{where}.depth_percent")
        if not 0 < depth < 100:
            raise ExperimentFieldError(f"{where}.depth_percent", "must be between 0 and 100 (exclusive)")
    framing = raw.get("framing")
    if framing is not None and framing not in FRAMINGS:
        raise ExperimentFieldError(f"{where}.framing", "must be 'urgency' or 'loyalty'")
    template = raw.get("template")
    if template is not None and (not isinstance(template, str) or not _TEMPLATE_NAME.match(template)):
        raise ExperimentFieldError(f"{where}.template", "must be a WhatsApp template name: 1-512 characters of "
                                                        "a-z, 0-9 and '_'")
    return Variant(name=name, weight=weight, depth_percent=depth, framing=framing, template=template)


def parse_experiment(raw: Mapping[str, object], owner: str) -> Experiment | None:
    """The experiment of a market's or campaign's table (its `holdout` and `variants` keys),
    or None when it holds none. `owner` is "market:<name>" or "campaign:<name>"."""
    if "holdout" not in raw and "variants" not in raw:
        return None
    holdout = _decimal(raw.get("holdout", 0), "holdout")
    if not 0 <= holdout < 1:
        raise ExperimentFieldError("holdout", f"must be a share from 0 up to (not including) 1, got {raw['holdout']!r}")
    if (holdout * BUCKETS) % 1:
        raise ExperimentFieldError("holdout", "must be a multiple of 0.0001 (one bucket in 10,000)")
    listed = raw.get("variants")
    if listed is None:
        if not holdout:
            return None
        return Experiment(owner, holdout, (Variant(TREATMENT, Decimal(1)),))
    if not isinstance(listed, list) or not listed:
        raise ExperimentFieldError("variants", "must be a non-empty list of tables like "
                                               '{ name = "depth20", weight = 0.5, depth_percent = "20" }')
    variants = tuple(_parse_variant(entry, index) for index, entry in enumerate(listed))
    seen: set[str] = set()
    for index, variant in enumerate(variants):
        if variant.name in seen:
            raise ExperimentFieldError(f"variants[{index}].name", f"{variant.name!r} is already a variant's name")
        seen.add(variant.name)
    total = sum((variant.weight for variant in variants), Decimal(0))
    if total != 1:
        raise ExperimentFieldError("variants", f"weights must add up to exactly 1, they add up to {_text(total)}")
    return Experiment(owner, holdout, variants)


# ------------------------------------------------------------------ assignment


def bucket(shop: str, customer_id: str, experiment_id: str) -> int:
    """0..9999, the same on every machine and in every process for the same three ids."""
    key = json.dumps([shop, customer_id, experiment_id], ensure_ascii=True, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(key.encode("ascii")).digest()[:8], "big") % BUCKETS


def _upper_bounds(experiment: Experiment) -> list[tuple[int, Variant]]:
    """Each variant's exclusive upper bucket: the rest after the holdout, cut by cumulative
    weight (rounded down to a whole bucket; the last always ends at 10,000)."""
    held = int(experiment.holdout * BUCKETS)
    rest = BUCKETS - held
    bounds, cumulative = [], Decimal(0)
    for variant in experiment.variants:
        cumulative += variant.weight
        bounds.append((held + int((cumulative * rest).to_integral_value(ROUND_FLOOR)), variant))
    return bounds


def assign(experiment: Experiment, shop: str, customer_id: str) -> Assignment:
    """The customer's group: "control" for the held-out buckets, else a variant by weight."""
    experiment_id = experiment.id
    drawn = bucket(shop, customer_id, experiment_id)
    if drawn < experiment.holdout * BUCKETS:
        return Assignment(experiment_id, CONTROL, drawn, None)
    for upper, variant in _upper_bounds(experiment):
        if drawn < upper:
            return Assignment(experiment_id, variant.name, drawn, variant)
    raise AssertionError("the last variant ends at the last bucket")  # weights add up to 1


def experiment_for(market_experiment: Experiment | None, campaign_experiment: Experiment | None = None,
                   ) -> Experiment | None:
    """A campaign's coupons follow the campaign's experiment when it has one, else their
    market's; a stream's or an order's follow their market's."""
    return campaign_experiment or market_experiment


def apply_variant(offer: Offer, framing: Framing, assignment: Assignment | None) -> Treatment:
    """The offer, framing and template a customer of this group gets. A variant's
    `depth_percent` replaces the percent of a percent_off offer (rule 3's market depth or a
    campaign's explicit percent); a refill's price and half price on a second are not a depth
    and stay. No assignment, or the control group (who get nothing): unchanged."""
    changes = assignment.changes if assignment is not None else None
    if changes is None:
        return Treatment(offer, framing, None)
    if changes.depth_percent is not None and offer.type == "percent_off":
        offer = replace(offer, percent=changes.depth_percent)
    return Treatment(offer, changes.framing or framing, changes.template)
