"""Experiments (SPEC section 9): the file shape, the experiment's identity, the stable
assignment of (shop, customer, experiment) to a group, and what a group is offered."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from decimal import Decimal
from math import sqrt

import pytest

from coupons.campaigns import CampaignFileError, parse_campaign
from coupons.experiments import (
    BUCKETS,
    CONTROL,
    TREATMENT,
    Experiment,
    ExperimentFieldError,
    Variant,
    apply_variant,
    assign,
    bucket,
    experiment_for,
    parse_experiment,
)
from coupons.markets import MarketsFileError, load_markets, parse_markets
from coupons.model import Offer

SPEC_EXAMPLE = {
    "holdout": 0.10,
    "variants": [
        {"name": "depth10", "weight": 0.5, "depth_percent": "10"},
        {"name": "depth20", "weight": 0.5, "depth_percent": "20", "framing": "loyalty"},
    ],
}

MARKETS_FILE = """
[north_america]
depth_percent = "10"
framing = "urgency"
valid_days = 7
channels = ["email", "sms"]
quiet_hours = ["21:00", "08:00"]
countries.US = { timezone = "America/New_York" }
holdout = 0.10
variants = [
  { name = "depth10", weight = 0.5, depth_percent = "10" },
  { name = "depth20", weight = 0.5, depth_percent = "20", framing = "loyalty" },
]

[world]
default = true
depth_percent = "15"
framing = "urgency"
valid_days = 7
channels = ["email"]
quiet_hours = ["21:00", "08:00"]
"""


def experiment(**overrides) -> Experiment:
    raw = {**SPEC_EXAMPLE, **overrides}
    parsed = parse_experiment({k: v for k, v in raw.items() if v is not None}, "market:north_america")
    assert parsed is not None
    return parsed


def field_error(**overrides) -> ExperimentFieldError:
    with pytest.raises(ExperimentFieldError) as caught:
        experiment(**overrides)
    return caught.value


def share_bounds(p: float, n: int) -> tuple[float, float]:
    """p ± 4 binomial standard deviations: a correct splitter leaves it about once in 16,000."""
    spread = 4 * sqrt(p * (1 - p) / n)
    return p - spread, p + spread


# ------------------------------------------------------------------ the file shape


def test_the_spec_example_in_a_markets_file_parses():
    market = parse_markets(MARKETS_FILE).by_name["north_america"]
    assert market.experiment is not None
    assert market.experiment.holdout == Decimal("0.1")
    assert market.experiment.variants == (
        Variant("depth10", Decimal("0.5"), depth_percent=Decimal("10")),
        Variant("depth20", Decimal("0.5"), depth_percent=Decimal("20"), framing="loyalty"),
    )
    assert market.experiment.group_names == (CONTROL, "depth10", "depth20")


def test_markets_without_the_keys_have_no_experiment():
    assert parse_markets(MARKETS_FILE).by_name["world"].experiment is None
    assert all(market.experiment is None for market in load_markets().by_name.values())


def test_a_holdout_without_variants_compares_the_market_offer_with_nothing():
    held = experiment(variants=None, holdout=0.2)
    assert held.variants == (Variant(TREATMENT, Decimal(1)),)
    assert held.group_names == (CONTROL, TREATMENT)


def test_a_zero_holdout_without_variants_switches_the_experiment_off():
    assert parse_experiment({"holdout": 0}, "market:m") is None


def test_variants_without_a_holdout_have_no_control_group():
    assert experiment(holdout=None).group_names == ("depth10", "depth20")


def test_a_template_variant_keeps_the_template_name():
    parsed = experiment(variants=[{"name": "new_copy", "weight": 1, "template": "repurchase_coupon_v2"}])
    assert parsed.variants[0].template == "repurchase_coupon_v2"


@pytest.mark.parametrize(("overrides", "field", "words"), [
    ({"holdout": 1}, "holdout", "up to (not including) 1"),
    ({"holdout": -0.1}, "holdout", "from 0"),
    ({"holdout": "half"}, "holdout", "must be a number"),
    ({"holdout": True}, "holdout", "must be a number"),
    ({"holdout": 0.00005}, "holdout", "0.0001"),
    ({"variants": []}, "variants", "non-empty list"),
    ({"variants": "depth10"}, "variants", "non-empty list"),
    ({"variants": ["depth10"]}, "variants[0]", "must be a table"),
    ({"variants": [{"weight": 1}]}, "variants[0].name", "required"),
    ({"variants": [{"name": "a"}]}, "variants[0].weight", "required"),
    ({"variants": [{"name": "Big Depth", "weight": 1}]}, "variants[0].name", "a-z"),
    ({"variants": [{"name": "control", "weight": 1}]}, "variants[0].name", "held-out"),
    ({"variants": [{"name": "a", "weight": 0.5}, {"name": "a", "weight": 0.5}]}, "variants[1].name", "already"),
    ({"variants": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.6}]}, "variants", "add up to 1.1"),
    ({"variants": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0}]}, "variants[1].weight", "above 0"),
    ({"variants": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": "x"}]}, "variants[1].weight", "number"),
    ({"variants": [{"name": "a", "weight": 1, "depth_percent": "100"}]}, "variants[0].depth_percent", "100"),
    ({"variants": [{"name": "a", "weight": 1, "depth_percent": "0"}]}, "variants[0].depth_percent", "between"),
    ({"variants": [{"name": "a", "weight": 1, "framing": "fomo"}]}, "variants[0].framing", "urgency"),
    ({"variants": [{"name": "a", "weight": 1, "template": "Repurchase Coupon"}]}, "variants[0].template", "a-z"),
    ({"variants": [{"name": "a", "weight": 1, "colour": "red"}]}, "variants[0].colour", "unknown field"),
])
def test_a_bad_entry_is_named_by_its_field(overrides, field, words):
    error = field_error(**overrides)
    assert error.field == field
    assert words in error.reason


def test_thirds_must_be_written_so_that_they_add_up_exactly():
    # Weights are never normalised: 0.33 x 3 is a typo to report, not a 33/33/33 split.
    thirds = [{"name": n, "weight": 0.33} for n in ("a", "b", "c")]
    assert "0.99" in field_error(variants=thirds).reason
    exact = [{"name": "a", "weight": 0.3333}, {"name": "b", "weight": 0.3333}, {"name": "c", "weight": 0.3334}]
    assert len(experiment(variants=exact).variants) == 3


def test_a_markets_file_error_names_the_market_and_the_field():
    broken = MARKETS_FILE.replace('{ name = "depth20", weight = 0.5,', '{ name = "depth20", weight = "half",')
    with pytest.raises(MarketsFileError) as caught:
        parse_markets(broken)
    assert str(caught.value).startswith("north_america.variants[1].weight: must be a number")


CAMPAIGN = """
name = "lapsed-test"
schedule = "0 10 * * *"
audience = "lapsed"
days = 60
"""


def test_a_campaign_file_holds_an_experiment_of_its_own():
    text = CAMPAIGN + 'holdout = 0.25\nvariants = [{ name = "deep", weight = 1, depth_percent = "30" }]\n'
    parsed = parse_campaign(text, "lapsed.toml", ["north_america"])
    assert parsed.experiment is not None
    assert parsed.experiment.owner == "campaign:lapsed-test"
    assert parsed.experiment.holdout == Decimal("0.25")


def test_a_campaign_file_error_names_the_file_and_the_field():
    text = CAMPAIGN + 'holdout = 0.1\nvariants = [{ name = "deep", weight = 1, framing = "fomo" }]\n'
    with pytest.raises(CampaignFileError) as caught:
        parse_campaign(text, "lapsed.toml", ["north_america"])
    assert (caught.value.file, caught.value.field) == ("lapsed.toml", "variants[0].framing")
    assert str(caught.value).startswith("lapsed.toml: variants[0].framing: ")


@pytest.mark.parametrize(("campaign_text", "offers"), [
    (CAMPAIGN.replace('"lapsed"', '"replenishment_due"'), "the refill"),
    (CAMPAIGN + 'offer = { type = "second_half_price" }\n', "half price"),
], ids=["refill", "second_half_price"])
def test_a_depth_variant_on_an_offer_without_a_depth_is_refused(campaign_text, offers):
    text = campaign_text + 'variants = [{ name = "deep", weight = 1, depth_percent = "30" }]\n'
    with pytest.raises(CampaignFileError) as caught:
        parse_campaign(text, "c.toml", ["north_america"])
    assert caught.value.field == "variants[0].depth_percent" and offers in caught.value.reason


def test_a_campaigns_experiment_comes_before_its_markets():
    market, campaign = experiment(), experiment(holdout=0.5)
    assert experiment_for(market, campaign) is campaign
    assert experiment_for(market, None) is market
    assert experiment_for(None, None) is None


# ------------------------------------------------------------------ identity


def test_the_id_names_its_owner_and_ignores_spelling():
    same = parse_experiment({"variants": [{"weight": "0.50", "depth_percent": 10, "name": "depth10"},
                                          {"framing": "loyalty", "name": "depth20", "weight": 0.5,
                                           "depth_percent": "20.0"}],
                             "holdout": "0.1"}, "market:north_america")
    assert same is not None and same.id == experiment().id
    assert experiment().id.startswith("market:north_america@")


@pytest.mark.parametrize("change", [
    {"holdout": 0.2},
    {"variants": [{"name": "depth10", "weight": 0.4, "depth_percent": "10"},
                  {"name": "depth20", "weight": 0.6, "depth_percent": "20", "framing": "loyalty"}]},
    {"variants": [{"name": "depth10", "weight": 0.5, "depth_percent": "12"},
                  {"name": "depth20", "weight": 0.5, "depth_percent": "20", "framing": "loyalty"}]},
    {"variants": [{"name": "depth20", "weight": 0.5, "depth_percent": "20", "framing": "loyalty"},
                  {"name": "depth10", "weight": 0.5, "depth_percent": "10"}]},
    {"variants": [{"name": "depth10", "weight": 0.5, "depth_percent": "10"},
                  {"name": "depth20", "weight": 0.25, "depth_percent": "20", "framing": "loyalty"},
                  {"name": "depth30", "weight": 0.25, "depth_percent": "30"}]},
    {"variants": [{"name": "depth10", "weight": 0.5, "depth_percent": "10", "template": "coupon_b"},
                  {"name": "depth20", "weight": 0.5, "depth_percent": "20", "framing": "loyalty"}]},
])
def test_any_change_to_the_definition_is_a_new_experiment(change):
    assert experiment(**change).id != experiment().id


def test_the_same_definition_in_another_market_is_another_experiment():
    other = parse_experiment(SPEC_EXAMPLE, "market:europe")
    assert other is not None and other.id != experiment().id


# ------------------------------------------------------------------ assignment


def test_buckets_are_pinned_so_that_no_release_reshuffles_customers():
    # The formula is part of the data: customers keep their group across versions.
    experiment_id = experiment().id
    assert experiment_id == "market:north_america@a3c216953c33"
    assert [bucket("shop-a", "c-1", experiment_id), bucket("shop-a", "c-2", experiment_id),
            bucket("shop-b", "c-1", experiment_id)] == [337, 7322, 3145]


def test_the_same_customer_lands_in_the_same_group_in_another_process():
    ids = [f"cust-{n}" for n in range(50)]
    here = [assign(experiment(), "shop-a", customer).variant for customer in ids]
    script = ("import json, sys; from coupons.experiments import assign, parse_experiment; "
              "e = parse_experiment(json.loads(sys.argv[1]), 'market:north_america'); "
              "print(json.dumps([assign(e, 'shop-a', c).variant for c in json.loads(sys.argv[2])]))")
    for seed in ("1", "2"):  # Python's own hash() differs per seed; the assignment must not
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", script, json.dumps(SPEC_EXAMPLE), json.dumps(ids)],
                             capture_output=True, text=True, check=True, env=env).stdout
        assert json.loads(out) == here


def test_the_group_does_not_depend_on_arrival_order():
    ids = [f"cust-{n}" for n in range(500)]
    in_order = {customer: assign(experiment(), "shop-a", customer).variant for customer in ids}
    shuffled = ids[:]
    random.Random(7).shuffle(shuffled)
    assert {customer: assign(experiment(), "shop-a", customer).variant for customer in shuffled} == in_order


def test_the_shop_is_part_of_the_key():
    ids = [f"cust-{n}" for n in range(200)]
    groups_a = [assign(experiment(), "shop-a", customer).variant for customer in ids]
    groups_b = [assign(experiment(), "shop-b", customer).variant for customer in ids]
    assert groups_a != groups_b


def test_ids_that_would_concatenate_alike_are_different_customers():
    # Joining ids as text would give shop "ab" + customer "c" the bucket of "a" + "bc".
    assert bucket("ab", "c", "x") != bucket("a", "bc", "x")
    assert bucket("a|b", "c", "x") != bucket("a", "b|c", "x")
    assert bucket('a","b', "c", "x") != bucket("a", 'b","c', "x")


def test_each_group_gets_its_share_of_10000_customers_within_binomial_bounds():
    uneven = experiment(holdout=0.1, variants=[{"name": "a", "weight": 0.2}, {"name": "b", "weight": 0.3},
                                               {"name": "c", "weight": 0.5}])
    n = 10_000
    counts: dict[str, int] = {}
    for number in range(n):
        group = assign(uneven, "shop-a", f"customer-{number}").variant
        counts[group] = counts.get(group, 0) + 1
    expected = {CONTROL: 0.1, "a": 0.9 * 0.2, "b": 0.9 * 0.3, "c": 0.9 * 0.5}
    assert set(counts) == set(expected)
    for group, p in expected.items():
        low, high = share_bounds(p, n)
        assert low <= counts[group] / n <= high, (group, counts[group])


def test_a_half_holdout_splits_300_buyers_within_binomial_bounds():
    halves = experiment(holdout=0.5, variants=None)
    held = sum(assign(halves, "shop-a", f"buyer-{n}").held_out for n in range(300))
    low, high = share_bounds(0.5, 300)
    assert low <= held / 300 <= high


def test_bucket_ranges_follow_holdout_then_cumulative_weight():
    # Holdout 0.1 is buckets 0-999; depth10 1000-5499; depth20 5500-9999.
    spec = experiment()
    found = {}
    for number in range(3000):
        assignment = assign(spec, "s", f"c{number}")
        found.setdefault(assignment.variant, []).append(assignment.bucket)
    assert max(found[CONTROL]) < 1000 <= min(found["depth10"])
    assert max(found["depth10"]) < 5500 <= min(found["depth20"])
    assert max(found["depth20"]) < BUCKETS


# ------------------------------------------------------------------ what a group gets

PERCENT_OFF = Offer(type="percent_off", sku="S", product_name="Serum", currency="USD", percent=Decimal("10"))
REFILL = Offer(type="refill", sku="S-R", product_name="Serum", currency="USD", price=Decimal("14.00"))


def assignment_to(name: str):
    spec = experiment(variants=[{"name": "plain", "weight": 0.5},
                                {"name": "depth20", "weight": 0.5, "depth_percent": "20", "framing": "loyalty",
                                 "template": "coupon_b"}])
    for number in range(1000):
        found = assign(spec, "s", f"c{number}")
        if found.variant == name:
            return found
    raise AssertionError(name)


def test_a_depth_variant_changes_the_percent_framing_and_template():
    treatment = apply_variant(PERCENT_OFF, "urgency", assignment_to("depth20"))
    assert treatment.offer.percent == Decimal("20")
    assert (treatment.framing, treatment.template) == ("loyalty", "coupon_b")


def test_a_variant_without_changes_keeps_the_markets_terms():
    treatment = apply_variant(PERCENT_OFF, "urgency", assignment_to("plain"))
    assert (treatment.offer, treatment.framing, treatment.template) == (PERCENT_OFF, "urgency", None)


def test_a_refill_keeps_its_price_under_a_depth_variant():
    assert apply_variant(REFILL, "urgency", assignment_to("depth20")).offer == REFILL


def test_no_experiment_leaves_everything_as_it_was():
    assert apply_variant(PERCENT_OFF, "loyalty", None) == apply_variant(PERCENT_OFF, "loyalty", assignment_to(CONTROL))
    assert apply_variant(PERCENT_OFF, "loyalty", None).offer is PERCENT_OFF
