"""Apprise URL templates: the recipient filled in, and a template parsed once per process
so a message only swaps its recipient into the parsed arguments (where that is proven
to equal Apprise's own parse). Used by `channels.adapter`; nothing here sends."""

from __future__ import annotations

import functools
import re
import string
from typing import Any
from urllib.parse import quote

import apprise
from apprise.plugins import N_MGR
from apprise.utils.parse import GET_SCHEMA_RE

from coupons.model import ADDRESS_FIELD

# Apprise's per-service deadline. 0 runs the plugin inline (no thread hop, and a
# Celery soft time limit lands in our thread); the plugins' own socket timeouts
# (4 s for HTTP, 15 s for SMTP) and the task's time limits bound a send instead.
APPRISE_SERVICE_TIMEOUT = 0

# Addresses used to check a template at start. They must look real enough for
# Apprise's own validation (LINE user ids are "U" + 32 hex).
SAMPLE_ADDRESS: dict[str, str] = {
    "email": "sample@example.com",
    "sms": "+15551234567",
    "whatsapp": "+15551234567",
    "line": "U0123456789abcdef0123456789abcdef",
    "telegram": "123456789",
}

PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def fill_template(template: str, address: str) -> str:
    """Put the percent-encoded address in place of the template's placeholder."""
    encoded = quote(address, safe="")
    return PLACEHOLDER.sub(
        lambda m: encoded if m.group(1) in ADDRESS_FIELD.values() else m.group(0),
        template,
    )


def _pass_through() -> tuple[type[BaseException], ...]:
    """Celery's control-flow exceptions derive from Exception; never swallow them."""
    found: list[type[BaseException]] = []
    try:
        from billiard.exceptions import SoftTimeLimitExceeded, Terminated, TimeLimitExceeded

        found += [SoftTimeLimitExceeded, TimeLimitExceeded, Terminated]
    except ImportError:
        pass
    try:
        from celery.exceptions import Ignore, Reject, Retry

        found += [Retry, Ignore, Reject]
    except ImportError:
        pass
    return tuple(found)


PASS_THROUGH = _pass_through()


def instantiate(url: str, asset: apprise.AppriseAsset):
    """`Apprise.instantiate(url)` without the work it does only for its own DEBUG lines.

    instantiate() renders the URL twice for log lines nobody reads here (a
    CWE-312-masked copy before parsing, and `plugin.url()` after): ~85% of its
    cost. Same steps otherwise: the plugin's own parse_url, then construct.
    Schemes that only a plugin's native-URL parser knows go through
    instantiate() itself.
    """
    results = _parse(url)
    if results is _NOT_OURS:
        return apprise.Apprise.instantiate(url, asset=asset)
    return construct(results, asset) if results else None


_NOT_OURS: dict = {}


def _parse(url: str) -> dict | None:
    """The plugin's parse_url result as instantiate() gets it; _NOT_OURS for a
    scheme no plugin registers (native URLs)."""
    url = url.replace("/#", "/%23")
    match = GET_SCHEMA_RE.match(url)
    schema = match.group("schema").lower() if match else ""
    if schema not in N_MGR:
        return _NOT_OURS
    return N_MGR[schema].parse_url(url) or None


def construct(results: dict, asset: apprise.AppriseAsset):
    """instantiate()'s checks around the constructor: the plugin's class enabled,
    constructor errors and a plugin its constructor disabled give None."""
    plugin_class = N_MGR[results["schema"]]
    if not plugin_class.enabled:
        return None
    results["tag"] = set()
    results["asset"] = asset
    try:
        plugin = plugin_class(**results)
    except PASS_THROUGH:
        raise
    except Exception:  # noqa: BLE001 - as instantiate(): unusable arguments
        return None
    return plugin if plugin.enabled else None


class ParsedTemplate:
    """A channel template parsed once; per message only the recipient changes.

    The template is parsed with an alphanumeric sentinel in place of the address;
    a message's plugin arguments are that parse with the sentinel replaced by the
    address (in every string, list, tuple, set and dict inside). That is taken
    only where it is proven to give what parsing the filled URL gives: at start,
    for probe addresses of the channel's shapes holding each character of
    FAST_CHARACTERS, and per message only for addresses made of those characters.
    Anything else (a plugin that transforms or re-encodes the recipient, a value
    type it cannot copy, a native URL, an address with other characters) is
    parsed from the filled URL as before.
    """

    SENTINEL = "Zq7EncoreRcptXw4"
    FAST_CHARACTERS = frozenset(string.ascii_letters + string.digits + "+-._@")
    PROBES = (
        "+15551234567", "15551234567", "+442071838750", "0123456789", "123456789",
        "-1001234567890", "@channel_name", "U0123456789abcdef0123456789abcdef",
        "ana.maria-lopez_99+coupons@mail.example.com", "a@b.co", "AbC", "x", "_", ".",
        "+", "-", "@", "a+b", "a-b", "a.b", "a_b", "a@b", "+a", "-a", ".a", "_a", "@a",
        "a+", "a-", "a.", "a_", "a@",
    )

    def __init__(self, channel: str, template: str) -> None:
        self._template = template
        self._arguments = self._proven_arguments(channel, template)

    @property
    def proven(self) -> bool:
        """Whether messages skip parsing (else each filled URL is parsed)."""
        return self._arguments is not None

    def plugin(self, address: str, asset: apprise.AppriseAsset):
        """A fresh plugin for `address`, or None where Apprise rejects it."""
        if self._arguments is not None and self.FAST_CHARACTERS.issuperset(address):
            return construct(_substituted(self._arguments, self.SENTINEL, address), asset)
        return instantiate(fill_template(self._template, address), asset)

    @classmethod
    def _proven_arguments(cls, channel: str, template: str) -> dict | None:
        if cls.SENTINEL in template:
            return None
        arguments = _parse(fill_template(template, cls.SENTINEL))
        if not arguments or arguments is _NOT_OURS or not _copyable(arguments):
            return None
        if _substituted(arguments, cls.SENTINEL, "") == arguments:
            return None  # the recipient is not where the sentinel can show it
        for probe in (SAMPLE_ADDRESS[channel], *cls.PROBES):
            if _parse(fill_template(template, probe)) != _substituted(arguments, cls.SENTINEL, probe):
                return None
        return arguments


@functools.lru_cache(maxsize=64)
def parsed_template(channel: str, template: str) -> ParsedTemplate:
    """Once per process and template: proving the parse costs ~70 parses."""
    return ParsedTemplate(channel, template)


_COPIED_LEAVES = (int, float, bool, bytes, type(None))


def _copyable(value: Any) -> bool:
    """Whether `_substituted` rebuilds every container in `value` (exact types only)."""
    if type(value) in (str, *_COPIED_LEAVES):
        return True
    if type(value) in (list, tuple, set, frozenset):
        return all(_copyable(item) for item in value)
    if type(value) is dict:
        return all(_copyable(k) and _copyable(v) for k, v in value.items())
    return False


def _substituted(value: Any, sentinel: str, address: str) -> Any:
    """A fresh deep copy of `value` with `sentinel` replaced by `address` in every string."""
    kind = type(value)
    if kind is str:
        return value.replace(sentinel, address)
    if kind is dict:
        return {_substituted(k, sentinel, address): _substituted(v, sentinel, address)
                for k, v in value.items()}
    if kind in (list, tuple, set, frozenset):
        return kind(_substituted(item, sentinel, address) for item in value)
    return value


def new_asset() -> apprise.AppriseAsset:
    return apprise.AppriseAsset(app_id="Encore", service_timeout=APPRISE_SERVICE_TIMEOUT)
