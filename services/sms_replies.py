"""SMS replies (SPEC rule 18): a customer's STOP, START or HELP, as Twilio's inbound
message webhook brings it, obeyed and answered.

The reply comes from a phone number, not a customer: one Twilio number sends for the
whole install, so a reply acts on every customer (in every shop) who holds that number
as `phone`: a number two customers share is opted out for both. STOP and START are
consent changes at the reply's time, ordered by time like every consent change (rule
10, `coupons.consent`): an SMS delivery already scheduled is checked again before it
goes out, and a checkout newer than the reply decides again. START gives back only
what an opt-out took (`coupons.consent.after_opt_in`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from coupons import consent
from coupons.errors import ConfigError, EncoreError
from coupons.replies import InboundSms, help_text, read_inbound_sms, twiml, verify_twilio_signature
from store.db import session_scope
from store.models import Customer

from .bootstrap import Runtime
from .intake import consent_state, set_consent
from .unsubscribe import customer_language

log = logging.getLogger(__name__)

SMS = "sms"


class TwilioNotConfigured(ConfigError):
    """ENCORE_TWILIO_AUTH_TOKEN is not set: no reply can be verified, none is obeyed."""


class BadTwilioSignature(EncoreError):
    """The request does not carry Twilio's signature for this URL and body."""


@dataclass(frozen=True)
class ReplyOutcome:
    kind: str | None  # opt_out | opt_in | help | None (a message that asks nothing)
    customers: int  # customers holding the number whose consent changed
    twiml: str


def verify_inbound(runtime: Runtime, urls: Sequence[str], params: list[tuple[str, str]],
                   signature: str | None) -> None:
    """Raise unless Twilio signed this request for one of `urls` (the URLs Twilio may have
    called: the public one, then the request's own)."""
    token = runtime.settings.twilio_auth_token
    if not token:
        raise TwilioNotConfigured("ENCORE_TWILIO_AUTH_TOKEN is not set: Twilio's inbound messages cannot be verified")
    if not any(verify_twilio_signature(url, params, token, signature) for url in urls):
        raise BadTwilioSignature("X-Twilio-Signature: missing or wrong signature for this URL and body")


def handle_reply(runtime: Runtime, params: Iterable[tuple[str, str]], now: datetime) -> ReplyOutcome:
    """Obey one verified inbound message and answer it: STOP-like words opt the number out
    of SMS, START-like words opt it back in, HELP gets the help line in the customer's
    language. Raises ValueError naming a missing field."""
    reply = read_inbound_sms(list(params))
    with session_scope(runtime.database_url) as session:
        holders = _customers_with_phone(session, reply.sender)
        if reply.kind == "opt_out":
            changed = _change(holders, lambda state: consent.after_opt_out(state, [SMS], now))
            log.info("SMS reply %s: STOP from a number held by %d customer(s)", reply.message_sid, len(holders))
            return ReplyOutcome("opt_out", changed, twiml())
        if reply.kind == "opt_in":
            changed = _change(holders, lambda state: consent.after_opt_in(state, [SMS], now))
            log.info("SMS reply %s: START from a number held by %d customer(s)", reply.message_sid, len(holders))
            return ReplyOutcome("opt_in", changed, twiml())
        if reply.kind == "help":
            return ReplyOutcome("help", 0, twiml(_help(runtime, holders, reply)))
    return ReplyOutcome(None, 0, twiml())


def _customers_with_phone(session: Session, phone: str) -> list[Customer]:
    """Every customer holding `phone`, locked until commit in id order (two replies, or a
    reply and an order, take turns on a customer instead of overwriting each other)."""
    return list(session.scalars(select(Customer).where(Customer.phone == phone).order_by(Customer.id)
                                .with_for_update().execution_options(populate_existing=True)))


def _change(customers: list[Customer], change) -> int:
    changed = 0
    for customer in customers:
        before = consent_state(customer)
        after = change(before)
        if after != before:
            set_consent(customer, after)
            changed += 1
    return changed


def _help(runtime: Runtime, holders: list[Customer], reply: InboundSms) -> str:
    """The help line in the language of the first customer holding the number, naming
    their shop's brand when the shops file gives one."""
    customer = holders[0] if holders else None
    language = customer_language(runtime, customer) or "en"
    brand = None
    if customer is not None:
        shop = runtime.settings.shops.by_name.get(customer.shop)
        brand = shop.brand if shop is not None else None
    return help_text(language, brand or "")
