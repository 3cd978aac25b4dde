"""Delivery: one small interface over Apprise, failure classification, rate limits.

    with open_sender("sms", template) as sender:
        result = sender.send(customer.phone, message)   # SendResult, never raises

`result.transient` decides between retrying the same channel later and moving
to the next one (SPEC rule 12).
"""

from .adapter import (
    ChannelConfigError,
    ChannelSender,
    fill_template,
    open_sender,
    setting_name,
    validate_channel_template,
)
from .classify import SendResult, classify_apprise_log
from .ratelimit import LocalRateLimiter, RateLimiter, make_rate_limiter

__all__ = [
    "ChannelConfigError",
    "ChannelSender",
    "LocalRateLimiter",
    "RateLimiter",
    "SendResult",
    "classify_apprise_log",
    "fill_template",
    "make_rate_limiter",
    "open_sender",
    "setting_name",
    "validate_channel_template",
]
