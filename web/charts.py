"""Small server-side SVG charts for the dashboard: no JavaScript, no CDN, nothing
fetched by the browser. Every text that came from data is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from markupsafe import Markup, escape

from .aggregates import Funnel, Rate

FUNNEL_STEPS = (("buyers", "Buyers", "#94a3b8"), ("coupons", "Coupons", "#60a5fa"),
                ("sent_on_time", "Sent on time", "#22c55e"), ("redeemed", "Redeemed", "#f59e0b"))
CHANNEL_COLORS = {"email": "#3b82f6", "sms": "#10b981", "whatsapp": "#22c55e", "line": "#84cc16",
                  "telegram": "#0ea5e9", "none": "#94a3b8"}
STATE_COLORS = {"failed": "#ef4444", "suppressed": "#a855f7", "expired": "#f97316", "cancelled": "#64748b"}
WIDTH = 560
LABEL_WIDTH = 150


def _empty(name: str, message: str = "No data yet") -> Markup:
    return Markup(f'<svg class="chart" data-chart="{name}" data-points="0" viewBox="0 0 {WIDTH} 40" role="img">'
                  f'<text x="{WIDTH // 2}" y="24" text-anchor="middle" class="muted">{escape(message)}</text></svg>')


OFFER_LABELS = {"refill": "Refill", "second_half_price": "2nd at half price", "percent_off": "Percent off"}


def market_label(name: str) -> str:
    """`north_america` → `North America`: market names as a seller says them."""
    return " ".join(w if w in ("of", "and") else w.capitalize() for w in name.split("_"))


def offer_label(offer_type: str) -> str:
    return OFFER_LABELS.get(offer_type, offer_type.replace("_", " "))


def _number(value: float) -> str:
    return f"{value:,.0f}"


def _percent(value: float) -> str:
    return f"{value * 100:.0f}%" if value >= 0.1 or value == 0 else f"{value * 100:.1f}%"


def funnel_chart(name: str, funnels: Sequence[Funnel]) -> Markup:
    """Per label, four bars: buyers → coupons → sent on time → redeemed, on one scale."""
    if not funnels:
        return _empty(name)
    bar, gap, group_gap = 13, 2, 14
    top = max(1, *(max(f.buyers, f.coupons) for f in funnels))
    span = WIDTH - LABEL_WIDTH - 60
    parts, y, points = [], 4, 0
    for funnel in funnels:
        parts.append(f'<text x="0" y="{y + 2 * (bar + gap) + 2}" class="label">{escape(funnel.label)}</text>')
        for key, title, color in FUNNEL_STEPS:
            value = getattr(funnel, key)
            width = max(1.5, span * value / top) if value else 0
            points += 1
            parts.append(f'<rect class="bar" x="{LABEL_WIDTH}" y="{y}" width="{width:.1f}" height="{bar}" rx="2" '
                         f'fill="{color}"><title>{escape(funnel.label)}: {title} {_number(value)}</title></rect>'
                         f'<text x="{LABEL_WIDTH + width + 4:.1f}" y="{y + bar - 2}" class="value">'
                         f'{_number(value)}</text>')
            y += bar + gap
        y += group_gap
    return Markup(f'<svg class="chart" data-chart="{name}" data-points="{points}" viewBox="0 0 {WIDTH} {y}" '
                  f'role="img">{"".join(parts)}</svg>')


def funnel_legend() -> Markup:
    items = "".join(f'<span class="key"><i style="background:{color}"></i>{title}</span>'
                    for _, title, color in FUNNEL_STEPS)
    return Markup(f'<div class="legend">{items}</div>')


def rate_chart(name: str, rates: Sequence[Rate]) -> Markup:
    """Redemption rate per label: the share of sent coupons that came back as an order."""
    if not rates:
        return _empty(name, "No coupon sent yet")
    bar, gap = 18, 8
    top = max(0.05, *(r.rate for r in rates))
    span = WIDTH - LABEL_WIDTH - 130
    parts, y = [], 4
    for rate in rates:
        width = max(1.5, span * rate.rate / top) if rate.rate else 0
        parts.append(f'<text x="0" y="{y + bar - 4}" class="label">{escape(rate.label)}</text>'
                     f'<rect class="track" x="{LABEL_WIDTH}" y="{y}" width="{span}" height="{bar}" rx="3"/>'
                     f'<rect class="bar" x="{LABEL_WIDTH}" y="{y}" width="{width:.1f}" height="{bar}" rx="3" '
                     f'fill="#f59e0b"><title>{escape(rate.label)}: {rate.redeemed} of {rate.sent} redeemed'
                     f'</title></rect>'
                     f'<text x="{LABEL_WIDTH + span + 6}" y="{y + bar - 4}" class="value">'
                     f'<tspan class="strong">{_percent(rate.rate)}</tspan> {rate.redeemed}/{rate.sent}</text>')
        y += bar + gap
    return Markup(f'<svg class="chart" data-chart="{name}" data-points="{len(rates)}" viewBox="0 0 {WIDTH} {y}" '
                  f'role="img">{"".join(parts)}</svg>')


def time_chart(name: str, series: Sequence[tuple[datetime, dict[str, int]]], bucket: str) -> Markup:
    """Messages sent per hour (or day), stacked by channel."""
    if not series:
        return _empty(name, "Nothing sent yet")
    height, bottom, left = 170, 22, 40
    channels = [c for c in CHANNEL_COLORS if any(c in counts for _, counts in series)]
    channels += sorted({c for _, counts in series for c in counts} - set(channels))
    top = max(1, *(sum(counts.values()) for _, counts in series))
    slots = max(len(series), 12)
    step = (WIDTH - left) / slots
    parts = [f'<line x1="{left}" y1="{height}" x2="{WIDTH}" y2="{height}" class="axis"/>',
             f'<text x="{left - 4}" y="12" text-anchor="end" class="value">{_number(top)}</text>',
             f'<text x="{left - 4}" y="{height}" text-anchor="end" class="value">0</text>']
    label_every = max(1, len(series) // 6)
    fmt = "%d %b %H:00" if bucket == "hour" else "%d %b"
    points = 0
    for index, (when, counts) in enumerate(series):
        x = left + index * step + step * 0.15
        y = float(height)
        for channel in channels:
            value = counts.get(channel, 0)
            if not value:
                continue
            h = max(1.0, (height - 8) * value / top)
            y -= h
            points += 1
            parts.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" '
                         f'fill="{CHANNEL_COLORS.get(channel, "#94a3b8")}"><title>{when.strftime(fmt)} UTC: '
                         f'{escape(channel)} {_number(value)}</title></rect>')
        if index % label_every == 0:
            parts.append(f'<text x="{x:.1f}" y="{height + 15}" class="value">{when.strftime(fmt)}</text>')
    legend = "".join(f'<span class="key"><i style="background:{CHANNEL_COLORS.get(c, "#94a3b8")}"></i>'
                     f'{escape(c)}</span>' for c in channels)
    return Markup(f'<svg class="chart" data-chart="{name}" data-points="{points}" '
                  f'viewBox="0 0 {WIDTH} {height + bottom}" role="img">{"".join(parts)}</svg>'
                  f'<div class="legend">{legend}</div>')


def problems_chart(name: str, problems: Sequence[tuple[str, str, int]]) -> Markup:
    """Deliveries that did not go out, by what stopped them."""
    if not problems:
        return _empty(name, "No failures or suppressions")
    bar, gap = 18, 8
    top = max(1, *(count for _, _, count in problems))
    span = WIDTH - LABEL_WIDTH - 60
    parts, y = [], 4
    for state, reason, count in problems:
        width = max(1.5, span * count / top)
        parts.append(f'<text x="0" y="{y + bar - 4}" class="label">{escape(reason.replace("_", " "))}</text>'
                     f'<rect class="bar" x="{LABEL_WIDTH}" y="{y}" width="{width:.1f}" height="{bar}" rx="3" '
                     f'fill="{STATE_COLORS.get(state, "#94a3b8")}"><title>{escape(state)}: {escape(reason)} '
                     f'{_number(count)}</title></rect>'
                     f'<text x="{LABEL_WIDTH + width + 6:.1f}" y="{y + bar - 4}" class="value">{_number(count)} '
                     f'{escape(state)}</text>')
        y += bar + gap
    return Markup(f'<svg class="chart" data-chart="{name}" data-points="{len(problems)}" '
                  f'viewBox="0 0 {WIDTH} {y}" role="img">{"".join(parts)}</svg>')
