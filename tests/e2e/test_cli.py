"""The command line as a user runs it: separate processes, embedded defaults."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from tests.support import order_paid


def encore(*args: str, cwd, stdin: str | None = None, env: dict | None = None, timeout: float = 240):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ENCORE_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], cwd=cwd, input=stdin, text=True,
                          capture_output=True, env=full_env, timeout=timeout)


def test_demo_runs_on_embedded_defaults_and_status_shows_what_it_did(tmp_path):
    # Given an empty folder and no settings at all
    started = datetime.now(UTC)
    # When the demo runs
    demo = encore("demo", "--buyers", "16", cwd=tmp_path)
    # Then it succeeds, shows messages as customers see them, and leaves its results behind
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "Summary" in demo.stdout and "── email to" in demo.stdout
    status = json.loads(encore("status", "--json", cwd=tmp_path).stdout)
    assert set(status) == {"events", "deliveries", "on_time_rate", "latency_seconds"}
    assert status["deliveries"]["sent"] > 0
    # ...its counts agree with `encore status`: a repeated event is accepted but stored once,
    # and the one rejected line is said to be broken on purpose
    fed = re.search(r"accepted (\d+), rejected (\d+)\n  (\d+) new events stored, and (\d+) repeat", demo.stdout)
    accepted, rejected, new, repeats = map(int, fed.groups())
    assert accepted == new + repeats and repeats == 1
    assert status["events"] == {"accepted": new, "rejected": rejected} and rejected == 1
    assert re.search(r"\n  rejected line \d+ \(broken on purpose", demo.stdout)
    # ...every progress line says where the deliveries are (the first one too)
    progress = [line for line in demo.stdout.splitlines() if line.startswith("[")]
    assert progress and all(line.split("]", 1)[1].split("|")[0].strip() for line in progress), progress
    # ...and its latency is the pipeline's: no coupon was due before the demo started
    # (orders dated half an hour back made "p99 1,804 s" sit beside "on time 100%")
    rows = json.loads(encore("deliveries", "--json", cwd=tmp_path).stdout)
    assert len(rows) == sum(status["deliveries"].values())
    assert all(datetime.fromisoformat(r["due_at"]) >= started for r in rows)
    assert f"p99 {status['latency_seconds']['p99']:.1f}s" in demo.stdout
    sent = [r for r in rows if r["state"] == "sent"]
    required = {"customer_id", "code", "offer", "channel", "state", "reason", "trigger_at", "due_at",
                "deadline_at", "sent_at", "attempts", "redeemed_at"}
    assert all(required <= set(r) for r in rows)
    assert all(r["channel"] and r["sent_at"].endswith("Z") for r in sent)
    # ...and the messages it showed are customers' own, with their codes (in whichever
    # language arrived first: sends run concurrently)
    assert any(r["code"] in demo.stdout for r in sent)
    one = sent[0]["customer_id"]
    mine = json.loads(encore("deliveries", "--customer", one, "--json", cwd=tmp_path).stdout)
    assert {r["customer_id"] for r in mine} == {one}


def test_emit_reports_each_rejected_line_and_exits_1(tmp_path):
    bad = order_paid("bad", customer_id="x")
    bad["data"]["customer"]["email"] = "not-an-address"
    lines = "\n".join([json.dumps(order_paid("ok-1", customer_id="a")), "", "{oops", json.dumps(bad),
                       json.dumps(order_paid("ok-2", customer_id="b"))]) + "\n"
    result = encore("emit", "-", cwd=tmp_path, stdin=lines)
    assert result.returncode == 1
    assert result.stdout.strip() == "accepted 2, rejected 2"
    errors = result.stderr.strip().splitlines()
    assert errors[0].startswith("line 3: not valid JSON")
    assert errors[1].startswith("line 4: data.customer.email: must be a valid email address")


def test_emit_exits_0_when_every_line_is_accepted(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(order_paid("ok-1")) + "\n" + json.dumps(order_paid("ok-1")) + "\n")
    result = encore("emit", str(path), cwd=tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, "accepted 2, rejected 0")
    status = json.loads(encore("status", "--json", cwd=tmp_path).stdout)
    assert status["events"] == {"accepted": 1, "rejected": 0}


@pytest.mark.parametrize("template, message", [
    ("json://127.0.0.1/sms", "ENCORE_CHANNEL_SMS: the template must hold the placeholder {phone} exactly once"),
    ("nonsense-scheme://{phone}", "ENCORE_CHANNEL_SMS"),
])
def test_a_broken_channel_url_is_a_clear_error_at_start(tmp_path, template, message):
    result = encore("worker", cwd=tmp_path, env={"ENCORE_CHANNEL_SMS": template}, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr


def test_dead_letters_can_be_listed_and_replayed_with_a_fix(tmp_path):
    bad = order_paid("fix-me", customer_id="z")
    bad["data"]["currency"] = "usd"
    encore("emit", "-", cwd=tmp_path, stdin=json.dumps(bad) + "\n")
    [letter] = json.loads(encore("dead-letters", "--json", cwd=tmp_path).stdout)
    assert letter["reason"] == "data.currency: must be an ISO 4217 currency code like USD"
    # Replaying it unchanged is refused with the same reason
    again = encore("replay", letter["id"], cwd=tmp_path)
    assert again.returncode == 1 and "still rejected: data.currency" in again.stdout
    # A fixed version is accepted and the dead letter is marked replayed
    bad["data"]["currency"] = "USD"
    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps(bad))
    result = encore("replay", letter["id"], "--file", str(fixed), cwd=tmp_path)
    assert result.returncode == 0 and "accepted as event fix-me" in result.stdout
    assert json.loads(encore("dead-letters", "--json", cwd=tmp_path).stdout) == []
    assert json.loads(encore("status", "--json", cwd=tmp_path).stdout)["events"]["accepted"] == 1


def test_emit_reads_a_named_pipe_as_a_file(tmp_path):
    # `encore emit <(jq -c ... orders.json)`: the shell passes /dev/fd/N, a pipe, not a regular file
    import threading

    fifo = tmp_path / "events.pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_text(json.dumps(order_paid("ok-1")) + "\n"))
    writer.start()
    result = encore("emit", str(fifo), cwd=tmp_path)
    writer.join(timeout=30)
    assert (result.returncode, result.stdout.strip()) == (0, "accepted 1, rejected 0"), result.stderr
