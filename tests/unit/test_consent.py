"""Consent is ordered by when it changed at the shop, never by when the event arrived."""

from datetime import UTC, datetime, timedelta

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
