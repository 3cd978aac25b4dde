"""`encore campaigns` as a user runs it (SPEC section 5)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from tests.e2e.test_cli import encore


def test_a_new_install_lists_the_shipped_examples_disabled(tmp_path):
    result = encore("campaigns", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["errors"] == []
    assert {c["name"]: c["enabled"] for c in report["campaigns"]} == {
        "sea-refill-reminder": False, "na-win-back": False, "latam-recent-buyers": False}
    sea = next(c for c in report["campaigns"] if c["name"] == "sea-refill-reminder")
    assert sea["next_run"]["local"].endswith("T10:00:00+07:00") and sea["next_run"]["utc"].endswith("T03:00:00Z")
    assert sea["last_run"] is None


def test_a_broken_file_is_listed_with_its_field_and_the_good_one_still_runs(tmp_path):
    folder = tmp_path / "campaigns"
    folder.mkdir()
    # Daily at the hour two hours ago: its latest occurrence is within its 24 h window and
    # stays the same between the two runs below (an every-minute schedule moved on when a
    # minute boundary fell between them).
    hour = (datetime.now(UTC) - timedelta(hours=2)).hour
    schedule = f"0 {hour} * * *"
    (folder / "good.toml").write_text(f'name = "good"\nschedule = "{schedule}"\naudience = "lapsed"\ndays = 60\n')
    (folder / "bad.toml").write_text('name = "bad"\nschedule = "* * * * *"\naudience = "lapsed"\ndays = 60\n'
                                     'markets = ["atlantis"]\n')
    env = {"ENCORE_CAMPAIGNS_DIR": str(folder)}
    listing = encore("campaigns", cwd=tmp_path, env=env)
    assert listing.returncode == 0
    assert f"good  enabled  {schedule} (UTC)" in listing.stdout
    assert "broken  bad.toml: markets[0]: unknown market 'atlantis'" in listing.stdout
    dry = encore("campaigns", "run", "good", "--dry-run", cwd=tmp_path, env=env)
    assert dry.returncode == 0 and "audience 0" in dry.stdout and "nothing was sent or stored" in dry.stdout
    broken = encore("campaigns", "run", "bad", cwd=tmp_path, env=env)
    assert broken.returncode == 2 and "bad.toml: markets[0]" in broken.stderr
    unknown = encore("campaigns", "run", "nope", cwd=tmp_path, env=env)
    assert unknown.returncode == 2 and "no campaign named 'nope'" in unknown.stderr
    ran = encore("campaigns", "run", "good", cwd=tmp_path, env=env)
    assert ran.returncode == 0 and ": done" in ran.stdout
    again = encore("campaigns", "run", "good", cwd=tmp_path, env=env)
    assert again.returncode == 0 and "already done" in again.stdout
    report = json.loads(encore("campaigns", "--json", cwd=tmp_path, env=env).stdout)
    [good] = report["campaigns"]
    assert good["last_run"]["state"] == "done" and good["last_run"]["counts"]["planned"] == 0


def test_check_reports_each_campaign_file_and_fails_on_a_broken_one(tmp_path):
    folder = tmp_path / "campaigns"
    folder.mkdir()
    (folder / "good.toml").write_text('name = "good"\nschedule = "0 10 * * *"\naudience = "lapsed"\ndays = 60\n')
    (folder / "bad.toml").write_text('name = "bad"\nschedule = "0 25 * * *"\naudience = "lapsed"\ndays = 60\n')
    result = encore("check", cwd=tmp_path, env={"ENCORE_CAMPAIGNS_DIR": str(folder)}, timeout=120)
    assert result.returncode == 1
    lines = {line.split()[1]: line for line in result.stdout.splitlines() if line.startswith("campaign ")}
    assert " ok " in lines["good.toml"] and "next run" in lines["good.toml"]
    assert "ERROR" in lines["bad.toml"] and "bad.toml: schedule:" in lines["bad.toml"]
