"""`encore serve` as an operator starts it."""

from __future__ import annotations

from tests.e2e.test_cli import encore


def test_serve_refuses_to_start_without_the_webhook_secret(tmp_path):
    result = encore("serve", "--port", "1", cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "ENCORE_WEBHOOK_SECRET" in result.stderr and "Traceback" not in result.stderr


def test_a_public_url_without_the_webhook_secret_stops_every_process_at_start(tmp_path):
    env = {"ENCORE_PUBLIC_URL": "https://encore.example.com"}
    for command in (["serve", "--port", "1"], ["worker"]):
        result = encore(*command, cwd=tmp_path, env=env, timeout=60)
        assert result.returncode == 2, command
        assert "ENCORE_WEBHOOK_SECRET" in result.stderr and "Traceback" not in result.stderr
