"""`encore emit` reads bytes per line: one undecodable or unstorable line is rejected by
itself, from standard input and from files alike, and the good lines around it are kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import order_paid


def emit(args: list[str], cwd, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCORE_")}
    return subprocess.run([sys.executable, "-m", "workers.cli", "emit", *args], cwd=cwd, input=stdin,
                           capture_output=True, env=env, timeout=240)


def lines() -> bytes:
    good = [json.dumps(order_paid(f"ok-{n}", customer_id=f"c{n}")).encode() for n in range(3)]
    surrogate = json.dumps(order_paid("bad-name", customer_id="x", name="\ud800")).encode()
    latin1 = json.dumps(order_paid("bad-bytes", customer_id="y", name="Jose")).encode().replace(b"Jose", b"Jos\xe9")
    return b"\n".join([good[0], latin1, good[1], surrogate, good[2]]) + b"\n"


@pytest.mark.parametrize("source", ["stdin", "file"])
def test_emit_rejects_undecodable_and_unstorable_lines_and_keeps_the_rest(tmp_path, source):
    if source == "file":
        path = tmp_path / "events.jsonl"
        path.write_bytes(lines())
        result = emit([str(path)], tmp_path)
    else:
        result = emit(["-"], tmp_path, stdin=lines())
    assert result.returncode == 1, result.stderr
    assert result.stdout.decode().strip() == "accepted 3, rejected 2"
    errors = result.stderr.decode().strip().splitlines()
    assert errors[0].startswith("line 2: not valid UTF-8 (byte 0xe9 at position")
    assert errors[1].startswith("line 4: data.customer.name: must not contain unpaired surrogates")
