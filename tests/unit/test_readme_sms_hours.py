"""The README's copy of the SMS hours table is the shipped markets file's."""

from __future__ import annotations

from pathlib import Path

from coupons.markets import load_markets
from coupons.sms_hours import DayWindow, SmsWindows

README = Path(__file__).resolve().parents[2] / "README.md"


def _cell(window: DayWindow | None) -> str:
    return "none" if window is None else f"{window.start:%H:%M}-{window.end:%H:%M}"


def _row(where: str, windows: SmsWindows) -> str:
    weekdays = {_cell(day) for day in windows.days[:5]}
    assert len(weekdays) == 1, f"{where}: the README's table has one column for Monday-Friday"
    return f"| {where} | {weekdays.pop()} | {_cell(windows.days[5])} | {_cell(windows.days[6])} |"


def test_the_readme_table_is_the_shipped_sms_hours():
    hours = load_markets().by_name["north_america"].sms_hours["US"]
    expected = ["| where | Monday-Friday | Saturday | Sunday |", "| --- | --- | --- | --- |",
                _row("US (federal; every state not listed)", hours.default),
                *(_row(region, windows) for region, windows in sorted(hours.regions.items()))]
    text = README.read_text("utf-8")
    table = text.split("<!-- sms-hours-table -->\n", 1)[1].split("<!-- /sms-hours-table -->", 1)[0]
    assert table.strip().splitlines() == expected
