"""Consent is ordered by when it changed at the shop, never by when the event arrived."""

from datetime import UTC, datetime, timedelta

from coupons import consent
from coupons.consent import after_opt_out, after_order, consented, opted_out

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def test_an_older_checkout_arriving_after_a_newer_opt_out_does_not_undo_it():
    # Given a checkout at 12:00 consenting to email, and an opt-out at 13:00
    state = after_order({}, ["email", "sms"], T0)
    state = after_opt_out(state, ["email"], T0 + timedelta(hours=1))
    # When an older checkout (11:00) arrives late, consenting to email again
    state = after_order(state, ["email", "sms"], T0 - timedelta(hours=1))
    # Then email stays withdrawn; sms, which nothing withdrew later, stays granted
    assert consented(state) == ["sms"]
    assert opted_out(state) == ["email"]


def test_the_same_events_in_shop_order_give_the_same_result():
    state = after_order({}, ["email", "sms"], T0 - timedelta(hours=1))
    state = after_order(state, ["email", "sms"], T0)
    state = after_opt_out(state, ["email"], T0 + timedelta(hours=1))
    assert consented(state) == ["sms"]


def test_a_newer_checkout_consents_again_after_an_opt_out():
    state = after_opt_out({}, ["email"], T0)
    state = after_order(state, ["email"], T0 + timedelta(minutes=5))
    assert consented(state) == ["email"] and opted_out(state) == []


def test_an_opt_out_arriving_late_still_withdraws_what_an_older_checkout_granted():
    state = after_order({}, ["email"], T0 + timedelta(hours=1))
    state = after_opt_out(state, ["email"], T0)  # older than the checkout: the checkout is newer, it stands
    assert consented(state) == ["email"]
    state = after_opt_out(state, ["email"], T0 + timedelta(hours=2))
    assert consented(state) == []


def test_on_the_same_instant_the_opt_out_wins_whatever_arrives_first():
    first = after_opt_out(after_order({}, ["email"], T0), ["email"], T0)
    second = after_order(after_opt_out({}, ["email"], T0), ["email"], T0)
    assert consented(first) == consented(second) == []


def test_the_newest_checkout_replaces_the_consent_list_and_an_older_one_does_not():
    state = after_order({}, ["email"], T0)
    state = after_order(state, ["sms"], T0 + timedelta(hours=1))
    assert consented(state) == ["sms"]
    state = after_order(state, ["email", "whatsapp"], T0 - timedelta(days=1))
    assert consented(state) == ["sms"]


# --- SMS replies (rule 18): START gives back what STOP took, ordered like every change


def test_start_after_stop_gives_sms_back_as_of_the_reply():
    state = consent.after_order({}, ["email", "sms"], T0)
    state = consent.after_opt_out(state, ["sms"], T0 + timedelta(hours=1))
    state = consent.after_opt_in(state, ["sms"], T0 + timedelta(hours=2))
    assert consent.consented(state) == ["email", "sms"] and consent.opted_out(state) == []


def test_a_start_older_than_the_stop_changes_nothing():
    state = consent.after_opt_out(consent.after_order({}, ["sms"], T0), ["sms"], T0 + timedelta(hours=2))
    assert consent.consented(consent.after_opt_in(state, ["sms"], T0 + timedelta(hours=1))) == []


def test_start_gives_nothing_a_checkout_withheld_or_withdrew():
    never = consent.after_order({}, ["email"], T0)
    assert consent.consented(consent.after_opt_in(never, ["sms"], T0 + timedelta(hours=1))) == ["email"]
    assert consent.consented(consent.after_opt_in({}, ["sms"], T0)) == []


def test_on_the_same_instant_a_stop_wins_over_a_start_and_a_start_over_a_checkout():
    stopped = consent.after_opt_out(consent.after_order({}, ["sms"], T0), ["sms"], T0 + timedelta(hours=1))
    assert consent.consented(consent.after_opt_in(stopped, ["sms"], T0 + timedelta(hours=1))) == []
    started = consent.after_opt_in(stopped, ["sms"], T0 + timedelta(hours=2))
    assert consent.consented(consent.after_order(started, [], T0 + timedelta(hours=2))) == ["sms"]
    assert consent.consented(consent.after_order(started, [], T0 + timedelta(hours=3))) == []
