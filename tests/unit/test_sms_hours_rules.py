"""Rule 17 in the delivery's life: when an SMS delivery is planned, whether a claimed
one may go out, and where a retry lands; and where a US customer's zone and state come
from (rule 8 with `customer.region`, Shopify's `province_code`)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from coupons.delivery_rules import after_attempt, decide_send, plan_delivery, send_window, sms_rule_for
from coupons.markets import load_markets, parse_markets
from coupons.model import CHANNELS, Customer
from coupons.shopify_orders import order_paid_event
from coupons.states import DeliveryState, Reason, SendAction
from coupons.timing import customer_zone

MARKETS = load_markets()
NA = MARKETS.by_name["north_america"]
ALL = frozenset(CHANNELS)
NEW_YORK = ZoneInfo("America/New_York")

# Florida customers in Miami (their zone given): Florida's window on their own clock.
FLORIDA_SMS = Customer(id="c-fl", country="US", region="US-FL", timezone="America/New_York", phone="+13055550100",
                       consent=frozenset({"sms"}))
FLORIDA_BOTH = Customer(id="c-fl2", country="US", region="US-FL", timezone="America/New_York", phone="+13055550101",
                        email="fl@example.com", consent=frozenset({"email", "sms"}))


def local(zone: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def plan(customer: Customer, at: datetime, market=NA, **kw):
    return plan_delivery(trigger_at=at, now=at, customer=customer, market=market, configured=ALL, **kw)


def decide(customer: Customer, now: datetime, market=NA, deadline_at=None, **kw):
    args = dict(now=now, deadline_at=deadline_at or now + timedelta(hours=20), customer=customer, market=market,
                configured=ALL, opted_out=(), failed_channels=(), last_reason=None, all_orders_refunded=False,
                last_sent_to_customer_at=None, max_attempts=5)
    args.update(kw)
    return decide_send(**args)


# --- the customer's zone and state ------------------------------------------------


@pytest.mark.parametrize(("region", "zone"), [
    ("US-FL", "America/New_York"), ("US-TX", "America/Chicago"), ("US-CA", "America/Los_Angeles"),
    ("US-AZ", "America/Phoenix"), (None, "America/New_York"), ("US-ZZ", "America/New_York"),
    ("CA-ON", "America/New_York"),  # a region of another country is no US state
])
def test_a_us_customer_without_timezone_reads_times_in_their_states_main_zone(region, zone):
    customer = Customer(id="c", country="US", region=region)
    assert customer_zone(customer, NA) == zone


def test_the_customers_own_timezone_wins_over_their_state():
    customer = Customer(id="c", country="US", region="US-TX", timezone="America/Denver")
    assert customer_zone(customer, NA) == "America/Denver"


def _shopify(address: dict) -> dict:
    return {"id": 1, "processed_at": "2026-03-10T12:00:00Z", "currency": "USD",
            "customer": {"id": 7, "email": "a@example.com"}, "shipping_address": address,
            "line_items": [{"sku": "S", "title": "Soap", "price": "10.00", "quantity": 1}]}


@pytest.mark.parametrize(("address", "region"), [
    ({"country_code": "US", "province_code": "FL"}, "US-FL"),
    ({"country_code": "US", "province_code": "tx"}, "US-TX"),
    ({"country_code": "CA", "province_code": "ON"}, "CA-ON"),
    ({"country_code": "US", "province_code": "Florida!"}, None),  # not a code: left out, the order still counts
    ({"country_code": "US"}, None),
])
def test_shopify_province_code_with_its_country_is_the_customers_region(address, region):
    event = order_paid_event(_shopify(address), "w1")
    assert event["data"]["customer"].get("region") == region


# --- planning ---------------------------------------------------------------------


def test_a_florida_text_at_half_past_eight_in_the_evening_is_planned_for_eight_next_morning():
    evening = local("America/New_York", 2026, 5, 12, 20, 30)  # inside the federal hours, outside Florida's
    result = plan(FLORIDA_SMS, evening)
    assert result.state == DeliveryState.SCHEDULED
    assert result.due_at == local("America/New_York", 2026, 5, 13, 8, 0)


def test_the_same_evening_an_email_first_customer_is_planned_at_once():
    evening = local("America/New_York", 2026, 5, 12, 20, 30)
    assert plan(FLORIDA_BOTH, evening).due_at == evening


def test_a_federal_state_customer_may_still_get_a_text_at_half_past_eight():
    evening = local("America/New_York", 2026, 5, 12, 20, 30)
    georgia = Customer(id="c-ga", country="US", region="US-GA", phone="+14045550100", consent=frozenset({"sms"}))
    assert plan(georgia, evening).due_at == evening


def test_texas_sunday_texts_wait_for_noon_on_the_customers_clock():
    sunday_morning = local("America/Chicago", 2026, 5, 10, 9, 30)  # 2026-05-10 is a Sunday
    texan = Customer(id="c-tx", country="US", region="US-TX", timezone="America/Chicago", phone="+12145550100",
                     consent=frozenset({"sms"}))
    assert plan(texan, sunday_morning).due_at == local("America/Chicago", 2026, 5, 10, 12, 0)


def test_without_a_timezone_a_state_with_two_zones_is_texted_only_when_both_clocks_allow():
    # No timezone: the customer may live in Florida's Central panhandle, where 08:00
    # Eastern is 07:00. The text waits for 08:00 Central (09:00 Eastern), and stops at 20:00 Eastern.
    evening = local("America/New_York", 2026, 5, 12, 20, 30)
    floridian = Customer(id="c", country="US", region="US-FL", phone="+13055550100", consent=frozenset({"sms"}))
    assert plan(floridian, evening).due_at == local("America/Chicago", 2026, 5, 13, 8, 0)
    late = decide(floridian, local("America/Chicago", 2026, 5, 13, 19, 30))  # 20:30 Eastern
    assert (late.action, late.due_at) == (SendAction.RESCHEDULE, local("America/Chicago", 2026, 5, 14, 8, 0))
    # Texas, Sunday: noon in El Paso (Mountain) is 13:00 in Dallas
    texan = Customer(id="c-tx", country="US", region="US-TX", phone="+12145550100", consent=frozenset({"sms"}))
    assert plan(texan, local("America/Chicago", 2026, 5, 10, 9, 30)).due_at == local("America/Denver", 2026, 5, 10,
                                                                                          12, 0)


def test_without_a_timezone_a_state_with_one_zone_keeps_its_window_on_that_clock():
    evening = local("America/New_York", 2026, 5, 12, 20, 30)
    marylander = Customer(id="c-md", country="US", region="US-MD", phone="+14105550100", consent=frozenset({"sms"}))
    assert plan(marylander, evening).due_at == local("America/New_York", 2026, 5, 13, 8, 0)


@pytest.mark.parametrize(("evening", "morning_utc"), [
    # 7 March 2026, Saturday: the clocks spring forward that night; 08:00 EDT is 12:00 UTC
    (local("America/New_York", 2026, 3, 7, 20, 30), datetime(2026, 3, 8, 12, 0, tzinfo=UTC)),
    # 31 October 2026: the clocks fall back that night; 08:00 EST is 13:00 UTC
    (local("America/New_York", 2026, 10, 31, 20, 30), datetime(2026, 11, 1, 13, 0, tzinfo=UTC)),
])
def test_the_florida_morning_after_a_daylight_saving_change_is_eight_on_the_new_clock(evening, morning_utc):
    result = plan(FLORIDA_SMS, evening)
    assert result.due_at == morning_utc
    assert result.due_at.astimezone(NEW_YORK).hour == 8


def test_canadian_texts_keep_the_quiet_hours_only():
    evening = local("America/Toronto", 2026, 5, 12, 20, 30)
    canadian = Customer(id="c-ca", country="CA", region="CA-ON", phone="+14165550100", consent=frozenset({"sms"}))
    assert plan(canadian, evening).due_at == evening


# A market whose state allows no texts on Sundays: a Saturday-evening text cannot go
# before its 24 h deadline.
NO_SUNDAY = parse_markets("""
[us]
default = true
depth_percent = "10"
framing = "urgency"
valid_days = 7
channels = ["sms", "email"]
quiet_hours = ["21:00", "08:00"]
language = "en"
countries.US = { timezone = "America/Chicago" }
[us.sms_hours.US]
default = ["08:00", "21:00"]
US-MS = { every_day = ["08:00", "20:00"], sunday = "none" }
""").by_name["us"]
MISSISSIPPI_SMS = Customer(id="c-ms", country="US", region="US-MS", phone="+16015550100", consent=frozenset({"sms"}))
MISSISSIPPI_BOTH = Customer(id="c-ms2", country="US", region="US-MS", phone="+16015550101", email="ms@example.com",
                            consent=frozenset({"sms", "email"}))
SATURDAY_EVENING = local("America/Chicago", 2026, 5, 9, 20, 30)


def test_sms_hours_that_open_after_the_deadline_expire_an_sms_only_delivery():
    result = plan(MISSISSIPPI_SMS, SATURDAY_EVENING, market=NO_SUNDAY)
    assert (result.state, result.reason) == (DeliveryState.EXPIRED, Reason.SMS_HOURS)


def test_sms_hours_that_open_after_the_deadline_pass_the_turn_to_the_next_channel():
    result = plan(MISSISSIPPI_BOTH, SATURDAY_EVENING, market=NO_SUNDAY)
    assert result.state == DeliveryState.SCHEDULED and result.due_at == SATURDAY_EVENING
    assert result.skipped == (("sms", "sms_hours"),)  # the planner records it (rule 16's `skipped`)
    decision = decide(MISSISSIPPI_BOTH, SATURDAY_EVENING, market=NO_SUNDAY,
                      deadline_at=SATURDAY_EVENING + timedelta(hours=24))
    assert (decision.action, decision.channel) == (SendAction.SEND, "email")
    assert decision.skipped == (("sms", "sms_hours"),)


def test_a_text_that_may_still_go_passes_nothing_over():
    evening = local("America/New_York", 2026, 5, 12, 20, 30)
    assert plan(FLORIDA_SMS, evening).skipped == ()
    assert decide(FLORIDA_BOTH, evening).skipped == ()  # email's turn: nothing ahead of it


# --- at send time -----------------------------------------------------------------


def test_a_claimed_florida_text_after_eight_waits_for_the_morning():
    evening = local("America/New_York", 2026, 5, 12, 20, 30)
    decision = decide(FLORIDA_SMS, evening)
    assert decision.action == SendAction.RESCHEDULE
    assert decision.due_at == local("America/New_York", 2026, 5, 13, 8, 0)


def test_a_claimed_delivery_whose_turn_is_email_goes_at_half_past_eight():
    evening = local("America/New_York", 2026, 5, 12, 20, 30)
    decision = decide(FLORIDA_BOTH, evening)
    assert (decision.action, decision.channel) == (SendAction.SEND, "email")


def test_after_email_failed_for_good_the_text_waits_for_the_morning():
    evening = local("America/New_York", 2026, 5, 12, 20, 30)
    decision = decide(FLORIDA_BOTH, evening, failed_channels=["email"], current_channel="email", channel_attempts=1)
    assert decision.action == SendAction.RESCHEDULE
    assert decision.due_at == local("America/New_York", 2026, 5, 13, 8, 0)


def test_every_attempt_checks_the_window_again_so_a_batch_that_crosses_eight_stops():
    windows = sms_rule_for(FLORIDA_SMS, NA)
    deadline = local("America/New_York", 2026, 5, 13, 19, 0)

    def window(now):
        return send_window(now=now, deadline_at=deadline, timezone="America/New_York", market=NA,
                           channel="sms", windows=windows)

    assert window(local("America/New_York", 2026, 5, 12, 19, 59, 59)).action == SendAction.SEND
    late = window(local("America/New_York", 2026, 5, 12, 20, 0))
    assert (late.action, late.due_at) == (SendAction.RESCHEDULE, local("America/New_York", 2026, 5, 13, 8, 0))
    # the same instant, for an email, is no reason to wait
    email = send_window(now=local("America/New_York", 2026, 5, 12, 20, 0), deadline_at=deadline,
                        timezone="America/New_York", market=NA, channel="email", windows=windows)
    assert email.action == SendAction.SEND


def test_a_window_that_opens_after_the_deadline_hands_the_row_back_at_once_for_the_next_channel():
    now = SATURDAY_EVENING
    decision = send_window(now=now, deadline_at=now + timedelta(hours=24), timezone="America/Chicago",
                           market=NO_SUNDAY, channel="sms", windows=sms_rule_for(MISSISSIPPI_SMS, NO_SUNDAY))
    assert (decision.action, decision.due_at) == (SendAction.RESCHEDULE, now)


def test_a_failed_text_is_retried_inside_the_sms_hours_not_at_the_end_of_quiet_hours():
    at = local("America/New_York", 2026, 5, 12, 19, 59)
    outcome = after_attempt(now=at, deadline_at=at + timedelta(hours=20), channel="sms", ok=False, transient=True,
                            reason="http_503", retry_after=None, channel_attempts=1, max_attempts=5, channels=["sms"],
                            failed_channels=[], retry_base_seconds=120, timezone="America/New_York", market=NA,
                            rng=random.Random(1), windows=sms_rule_for(FLORIDA_SMS, NA))
    assert outcome.due_at == local("America/New_York", 2026, 5, 13, 8, 0)


# --- email suppression (rule 18) --------------------------------------------------


def test_a_suppressed_address_passes_the_turn_to_sms():
    noon = local("America/New_York", 2026, 5, 12, 12, 0)
    decision = decide(FLORIDA_BOTH, noon, suppressed=("email",))
    assert (decision.action, decision.channel) == (SendAction.SEND, "sms")
    assert decision.skipped == (("email", "email_suppressed"),)
    planned = plan(FLORIDA_BOTH, noon, suppressed=("email",))
    assert (planned.state, planned.skipped) == (DeliveryState.SCHEDULED, (("email", "email_suppressed"),))


def test_a_suppressed_address_the_customer_never_gave_consent_for_is_not_passed_over():
    noon = local("America/New_York", 2026, 5, 12, 12, 0)
    texts_only = Customer(id="c-t", country="US", region="US-FL", timezone="America/New_York", phone="+13055550102",
                          email="t@example.com", consent=frozenset({"sms"}))
    assert decide(texts_only, noon, suppressed=("email",)).skipped == ()
    assert plan(texts_only, noon, suppressed=("email",)).skipped == ()


def test_a_suppressed_address_with_no_other_channel_ends_suppressed_email_suppressed():
    noon = local("America/New_York", 2026, 5, 12, 12, 0)
    only_email = Customer(id="c-e", country="US", email="e@example.com", consent=frozenset({"email"}))
    decision = decide(only_email, noon, suppressed=("email",))
    assert (decision.action, decision.state, decision.reason) == (SendAction.END, DeliveryState.SUPPRESSED,
                                                                  Reason.EMAIL_SUPPRESSED)
    planned = plan(only_email, noon, suppressed=("email",))
    assert (planned.state, planned.reason) == (DeliveryState.SUPPRESSED, Reason.EMAIL_SUPPRESSED)


@pytest.mark.parametrize(("claimed", "morning_utc"), [
    (local("America/New_York", 2026, 3, 7, 20, 30), datetime(2026, 3, 8, 12, 0, tzinfo=UTC)),  # spring forward
    (local("America/New_York", 2026, 10, 31, 20, 30), datetime(2026, 11, 1, 13, 0, tzinfo=UTC)),  # fall back
])
def test_a_text_claimed_the_evening_before_a_daylight_saving_change_waits_for_eight_on_the_new_clock(claimed,
                                                                                                     morning_utc):
    decision = decide(FLORIDA_SMS, claimed)
    assert (decision.action, decision.due_at) == (SendAction.RESCHEDULE, morning_utc)
    window = send_window(now=claimed, deadline_at=claimed + timedelta(hours=20), timezone="America/New_York",
                         market=NA, channel="sms", windows=sms_rule_for(FLORIDA_SMS, NA))
    assert window.due_at == morning_utc


# --- the shipped region zones and the Twilio token ---------------------------------

US_STATES = ("AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY "
             "NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY").split()


def test_every_state_has_a_main_zone_and_every_zone_exists():
    from coupons.markets import region_zones

    zones = region_zones()
    assert {f"US-{state}" for state in US_STATES} <= set(zones)
    for region, names in zones.items():
        assert names and all(ZoneInfo(name) for name in names), region
        assert len(set(names)) == len(names), region


def test_the_twilio_token_is_read_trimmed_and_never_shown():
    from config.settings import load_settings

    settings = load_settings({"ENCORE_TWILIO_AUTH_TOKEN": " secret-token "})
    assert settings.twilio_auth_token == "secret-token"
    assert "secret-token" not in repr(settings)
    assert load_settings({"ENCORE_TWILIO_AUTH_TOKEN": "  "}).twilio_auth_token is None
