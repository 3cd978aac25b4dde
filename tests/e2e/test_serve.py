"""`encore serve` as an operator starts it, and as clients that misbehave meet it."""

from __future__ import annotations

import os
import select
import socket

import httpx
import pytest

from tests.e2e.test_cli import encore
from tests.support import WEBHOOK_SECRET, ServeProcess


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


@pytest.mark.parametrize("secret", [" ", "x", "fifteen-chars-x"])
def test_a_secret_anyone_could_guess_stops_serve_and_workers_at_start(tmp_path, secret):
    # A blank or short secret would sign every request and unsubscribe link with it
    env = {"ENCORE_WEBHOOK_SECRET": secret, "ENCORE_PUBLIC_URL": "https://encore.example.com"}
    for command in (["serve", "--port", "1"], ["worker"]):
        result = encore(*command, cwd=tmp_path, env=env, timeout=60)
        assert result.returncode == 2, (command, result.stderr)
        assert "ENCORE_WEBHOOK_SECRET: must be at least 16 characters" in result.stderr
        assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------- slow clients


@pytest.fixture()
def serve_with_short_body_timeout(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCORE_")}
    env.update({"ENCORE_DATA_DIR": str(tmp_path / "var"), "ENCORE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "ENCORE_BODY_TIMEOUT_SECONDS": "1"})
    serve = ServeProcess(env, tmp_path / "serve.log", cwd=tmp_path).start()
    yield serve
    serve.stop()


def _half_request(port: int, path: str) -> socket.socket:
    """A POST that announces 4 KiB of body, sends a few bytes of it and stops."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: encore\r\nContent-Type: application/json\r\n"
                 "X-Encore-Signature: sha256=00\r\nContent-Length: 4096\r\n\r\n".encode() + b'[{"id": "half-')
    return sock


def _until_closed(sock: socket.socket, trickle: int = 0) -> bytes:
    """What the server sends until it closes the connection; a trickling client sends up
    to `trickle` more bytes, one whenever the server has been silent for a moment. The
    socket timeout only bounds a server that never closes (the failure this guards against)."""
    received = b""
    sock.settimeout(60)
    while True:
        if trickle and not select.select([sock], [], [], 0.2)[0]:
            try:
                sock.sendall(b" ")
                trickle -= 1
            except (BrokenPipeError, ConnectionResetError):
                trickle = 0
            continue
        try:
            data = sock.recv(4096)
        except ConnectionResetError:
            return received
        if not data:
            return received
        received += data


def test_clients_that_stall_half_way_through_a_body_are_answered_408_and_cut_off(serve_with_short_body_timeout):
    serve = serve_with_short_body_timeout
    # Given many clients stalled half-way through their bodies, on every endpoint that reads one
    paths = ["/events", "/coupons/ABCDE-FGHJK-MNPQR/redeem", "/webhooks/shopify/orders-paid", "/unsubscribe/t"]
    stalled = [_half_request(serve.port, path) for path in paths * 25]
    try:
        # Then the server answers each 408 and closes its connection
        for sock in stalled:
            answer = _until_closed(sock)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"body: not received within 1 s" in answer
    finally:
        for sock in stalled:
            sock.close()
    # And it still serves everyone else
    assert httpx.get(serve.url + "/openapi.json", timeout=30).status_code == 200


def test_a_client_that_trickles_its_body_byte_by_byte_is_cut_off_too(serve_with_short_body_timeout):
    # The deadline is for the whole body, not between bytes: trickling does not extend it
    sock = _half_request(serve_with_short_body_timeout.port, "/events")
    try:
        assert _until_closed(sock, trickle=150).startswith(b"HTTP/1.1 408")
    finally:
        sock.close()
