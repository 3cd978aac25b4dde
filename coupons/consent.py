"""Consent as it stood at the shop: per channel, the newest change wins.

Events arrive out of order (a checkout retried by the shop an hour later, a
backlog replayed), so consent is ordered by `occurred_at`, never by arrival: each
channel keeps its last change and the time it happened, and a change applies only
if it is newer. An order grants the channels it lists and withdraws the others as
of its time (the newest checkout's consent list replaces the older one); an
opt-out withdraws its channels as of its time. On a tie the opt-out wins: when in
doubt, do not message.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from .model import CHANNELS

ORDER = "order"
OPT_OUT = "opt_out"
OPT_IN = "opt_in"  # a reply that gives consent back (START, rule 18)
_RANK = {ORDER: 0, OPT_IN: 1, OPT_OUT: 2}
"""Which change wins a tie at the same instant: an opt-out over all, a reply's opt-in over a checkout."""


@dataclass(frozen=True)
class ChannelConsent:
    granted: bool
    at: datetime
    by: str  # ORDER | OPT_OUT | OPT_IN


ConsentState = Mapping[str, ChannelConsent]


def _applies(current: ChannelConsent | None, at: datetime, by: str) -> bool:
    if current is None or at > current.at:
        return True
    if at < current.at:
        return False
    # same instant: an opt-out is never undone by an order or a reply
    return _RANK.get(by, 0) >= _RANK.get(current.by, 0)


def after_order(state: ConsentState, consented: Collection[str], at: datetime) -> dict[str, ChannelConsent]:
    """The state after a checkout at `at` that consented to `consented` (and to nothing else)."""
    new = dict(state)
    for channel in CHANNELS:
        if _applies(state.get(channel), at, ORDER):
            new[channel] = ChannelConsent(channel in consented, at, ORDER)
    return new


def after_opt_out(state: ConsentState, channels: Collection[str], at: datetime) -> dict[str, ChannelConsent]:
    """The state after the customer withdrew `channels` at `at`."""
    new = dict(state)
    for channel in channels:
        if _applies(state.get(channel), at, OPT_OUT):
            new[channel] = ChannelConsent(False, at, OPT_OUT)
    return new


def after_opt_in(state: ConsentState, channels: Collection[str], at: datetime) -> dict[str, ChannelConsent]:
    """The state after the customer asked for `channels` back at `at` (an SMS reply
    START, rule 18). It gives back only what an opt-out took: a channel whose newest
    change is not an opt-out (never consented at checkout, or withdrawn by a newer
    checkout) stays as it is. Ordered by time like every change: an opt-out newer than
    the reply still wins."""
    new = dict(state)
    for channel in channels:
        current = state.get(channel)
        if current is not None and current.by == OPT_OUT and _applies(current, at, OPT_IN):
            new[channel] = ChannelConsent(True, at, OPT_IN)
    return new


def consented(state: ConsentState) -> list[str]:
    """Channels the customer agreed to, as of their newest change."""
    return [channel for channel in CHANNELS if channel in state and state[channel].granted]


def opted_out(state: ConsentState) -> list[str]:
    """Channels whose newest change is an explicit opt-out."""
    return [channel for channel in CHANNELS if channel in state and state[channel].by == OPT_OUT]
