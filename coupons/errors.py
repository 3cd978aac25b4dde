"""One family of errors for everything Encore refuses on purpose (model: dramatiq's
`errors.py`). Each message names the field, setting or file at fault, so a caller can
show it as it is; the entry points catch the roots, not lists of leaves.

    EncoreError
    ├── ConfigError   settings, the markets / campaigns / shops / templates files, the
    │                 currency and zone tables, channel templates: fixed by the operator
    ├── EventError    an event (or a payload mapped to one) that cannot be accepted
    ├── RenderError   a message that cannot be written (e.g. an amount in an unknown currency)
    └── ShopError     a shop that is not configured, or whose platform refused a call

Errors that callers have long caught as `ValueError` keep it as a second base.
"""

from __future__ import annotations


class EncoreError(Exception):
    """Something Encore refuses on purpose; the message says what and where."""


class ConfigError(EncoreError):
    """A setting or configuration file that cannot be used: nothing should run until
    the operator fixes it (the command line exits 2 with the message)."""


class EventError(EncoreError, ValueError):
    """A rejected event; `field` is the dotted path, `reason` the rule it broke."""

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}" if field else reason)


class RenderError(EncoreError, ValueError):
    """A message cannot be written for a delivery (its data has no valid rendering)."""


class ShopError(EncoreError):
    """A shop is unknown, or its platform failed a call."""
