"""`encore preview` (SPEC section 9): the messages of each market, language, channel and
offer type as a customer would see them, with sample data (coupons/preview.py); their
HTML parts written to files; and, with `--send-to`, real test messages to the seller.

A test message is marked `[TEST]` at the start of its subject (email) or its first line
(a text), carries a sample code no shop knows, and goes straight to the channel's sender:
no coupon, delivery, code in a shop, cap or count is written anywhere -- this module
never opens the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from coupons.errors import EncoreError
from coupons.messages import render_message
from coupons.model import Message
from coupons.preview import TEST_MARK, PreviewSelectionError, Sample, samples
from coupons.whatsapp import WhatsAppTemplates, clean_parameter, template_message

from .bootstrap import Runtime

TEXT_CHANNELS = ("sms", "whatsapp")
"""Channels that reach an E.164 number given to --send-to."""
ID_CHANNELS = ("line", "telegram")


class PreviewError(EncoreError):
    """An option that selects nothing, or a templates file that cannot be read."""


@dataclass(frozen=True)
class Preview:
    sample: Sample
    channel: str
    message: Message

    @property
    def name(self) -> str:
        return f"{self.sample.market}-{self.sample.language}-{self.channel}-{self.sample.offer.type}"

    def text_block(self) -> str:
        """The message as printed by `encore preview`."""
        sample = self.sample
        lines = [f"=== {sample.market} · {sample.language} ({sample.locale}, {sample.country}) · {self.channel} · "
                 f"{sample.offer.type} ==="]
        if self.message.subject is not None:
            lines.append(f"Subject: {self.message.subject}")
            lines.append("")
        lines.append(self.message.text.rstrip("\n"))
        template = self.message.whatsapp_template
        if template is not None:
            lines.append(f"WhatsApp template {template.name} ({template.language}):")
            lines += [f"  {{{{{number}}}}} = {value}" for number, value in enumerate(template.body, 1)]
            lines.append(f"  copy-code button = {template.coupon_code}")
        return "\n".join(lines) + "\n\n"


@dataclass(frozen=True)
class TestSend:
    what: str
    channel: str
    ok: bool
    reason: str


def _templates(runtime: Runtime) -> WhatsAppTemplates | None:
    return runtime.settings.whatsapp_templates


def preview_messages(runtime: Runtime, *, shop: str = "default", market: str | None = None,
                     locale: str | None = None, offer_type: str | None = None,
                     channel: str | None = None) -> list[Preview]:
    """Each selected market x language x channel x offer type, rendered."""
    shops = runtime.settings.shops.by_name
    if shop not in shops:
        raise PreviewError(f"--shop: unknown shop {shop!r} (one of {', '.join(shops)})")
    try:
        chosen = samples(runtime.markets, runtime.clock(), market=market, locale=locale, offer_type=offer_type,
                         refill_ratio=runtime.settings.refill_ratio, shop_name=runtime.settings.shops.signature(shop))
    except PreviewSelectionError as exc:
        raise PreviewError(str(exc)) from None
    templates = _templates(runtime)
    previews = []
    for sample in chosen:
        market_channels = runtime.markets.by_name[sample.market].channels
        for each in market_channels:
            if channel is not None and each != channel:
                continue
            message = render_message(sample.context, each)
            if each == "whatsapp" and templates is not None:
                message = replace(message, whatsapp_template=template_message(
                    templates.for_language(sample.language), sample.context))
            previews.append(Preview(sample, each, message))
    if channel is not None and not previews:
        raise PreviewError(f"--channel: no selected market sends by {channel!r}")
    return previews


def write_html(previews: list[Preview], folder: str) -> list[Path]:
    """Each email's HTML part as `<market>-<language>-email-<offer>.html` in `folder`."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for preview in previews:
        if preview.message.html is not None:
            path = target / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', preview.name)}.html"
            path.write_text(preview.message.html, encoding="utf-8")
            written.append(path)
    return written


def channels_for(address: str) -> tuple[str, ...]:
    """Which channels an address given to --send-to can reach."""
    if "@" in address:
        return ("email",)
    if re.fullmatch(r"\+[1-9]\d{6,14}", address):
        return TEXT_CHANNELS
    return ID_CHANNELS


def marked(message: Message) -> Message:
    """The test version: `[TEST]` starts the subject, or the text's first line. A WhatsApp
    template's text is the seller's approved copy, so the mark goes where the template
    lets it: at the start of its first body parameter ({{1}})."""
    if message.subject is not None:
        return replace(message, subject=f"{TEST_MARK} {message.subject}")
    template = message.whatsapp_template
    if template is not None and template.body:
        first = clean_parameter(f"{TEST_MARK} {template.body[0]}")
        template = replace(template, body=(first, *template.body[1:]))
    return replace(message, text=f"{TEST_MARK} {message.text}", whatsapp_template=template)


def send_previews(runtime: Runtime, previews: list[Preview], address: str) -> list[TestSend]:
    """Send each preview a configured channel can take to `address`, marked as a test,
    through the channel's own sender; nothing is stored."""
    reachable = set(channels_for(address)) & runtime.configured_channels
    results = []
    for preview in previews:
        if preview.channel not in reachable:
            continue
        with runtime.sender_pool(preview.channel).lend() as sender:
            result = sender.send(address, marked(preview.message))
        results.append(TestSend(preview.name, preview.channel, result.ok, result.reason or ""))
    return results
