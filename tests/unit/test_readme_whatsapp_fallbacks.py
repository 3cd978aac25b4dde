"""The README's table of what a customer gets when WhatsApp is refused, per market, is the
shipped markets file's channel order: generated from coupons/markets.toml and checked here.
After editing the markets file, print the new table with
`python -m tests.unit.test_readme_whatsapp_fallbacks` and paste it into the README."""

from __future__ import annotations

from pathlib import Path

from coupons.markets import Markets, load_markets

README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN, END = "<!-- whatsapp-fallbacks: begin -->", "<!-- whatsapp-fallbacks: end -->"


def fallback_table(markets: Markets) -> str:
    lines = ["| market | countries | channel order | when WhatsApp is refused, the coupon goes by |",
             "| --- | --- | --- | --- |"]
    for market in markets.by_name.values():
        countries = "any other" if market.is_default else ", ".join(market.country_timezones)
        order = ", ".join(market.channels)
        if "whatsapp" not in market.channels:
            then = "(no WhatsApp in its order: unchanged)"
        else:
            after = market.channels[market.channels.index("whatsapp") + 1:]
            then = ", else ".join(after) if after else "nothing: the delivery ends `failed` with WhatsApp's reason"
            if market.channels[0] != "whatsapp":
                then += f" (WhatsApp comes only after {' and '.join(market.channels[:market.channels.index('whatsapp')])})"
        lines.append(f"| {market.name} | {countries} | {order} | {then} |")
    return "\n".join(lines)


def test_the_readme_table_is_the_shipped_markets_channel_order():
    text = README.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, "the README lost its WhatsApp fallback table"
    shown = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert shown == fallback_table(load_markets(None)), (
        "README table out of date: run python -m tests.unit.test_readme_whatsapp_fallbacks")


if __name__ == "__main__":
    print(fallback_table(load_markets(None)))
