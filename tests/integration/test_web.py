"""`encore serve` over real HTTP, with a real worker, PostgreSQL and Redis: what a shop
and a mailbox provider see."""

from __future__ import annotations

import json
import socket
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select, update

from store.models import Coupon, DeadLetter, Delivery, InboxEvent
from tests.support import (
    SHOPIFY_SECRET,
    WEBHOOK_SECRET,
    ServeProcess,
    order_paid,
    running_stack,
    shopify_headers,
    shopify_order,
    signed_headers,
    wait_until,
    zone_where_local_hour_is,
)

PUBLIC_URL = "https://encore.example.com"


class Served:
    def __init__(self, stack, serve: ServeProcess):
        self.stack = stack
        self.serve = serve
        self.http = httpx.Client(base_url=serve.url, timeout=30)

    def post(self, path: str, payload, *, sign: bool = True, headers: dict | None = None) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        sent = {**(signed_headers(body) if sign else {"Content-Type": "application/json"}), **(headers or {})}
        return self.http.post(path, content=body, headers=sent)

    def count(self, model) -> int:
        return self.stack.query(select(func.count()).select_from(model))[0][0]

    def codes(self) -> list[str]:
        return [code for (code,) in self.stack.query(select(Coupon.code).order_by(Coupon.id))]


@pytest.fixture()
def served(monkeypatch, tmp_path, postgres_url, redis_url):
    env = {"ENCORE_WEBHOOK_SECRET": WEBHOOK_SECRET, "ENCORE_SHOPIFY_SECRET": SHOPIFY_SECRET,
           "ENCORE_PUBLIC_URL": PUBLIC_URL}
    with running_stack(monkeypatch, data_dir=tmp_path, database_url=postgres_url, broker_url=redis_url,
                       env=env) as stack:
        import os

        serve = ServeProcess(dict(os.environ), tmp_path / "serve.log", cwd=tmp_path).start()
        try:
            yield Served(stack, serve)
        finally:
            serve.stop()


def daytime(event_id: str, **kwargs) -> dict:
    return order_paid(event_id, timezone=zone_where_local_hour_is(13), **kwargs)


def test_signed_events_are_delivered_and_unsigned_or_tampered_ones_store_nothing(served):
    # Unsigned and tampered requests: 401, and nothing reaches the database
    event = daytime("e-1", customer_id="ann")
    body = json.dumps(event).encode()
    assert served.post("/events", body, sign=False).status_code == 401
    tampered = served.http.post("/events", content=body.replace(b'"20.00"', b'"0.50"'), headers=signed_headers(body))
    assert tampered.status_code == 401
    assert served.count(InboxEvent) == 0 and served.count(DeadLetter) == 0
    # A signed one: 202, stored before the answer, then sent by the worker
    response = served.post("/events", body)
    assert (response.status_code, response.json()) == (202, {"accepted": ["e-1"], "rejected": []})
    assert served.count(InboxEvent) == 1
    assert served.stack.smtp.wait_for(1, timeout=30)
    # A mixed batch: the valid events are still accepted, whatever breaks the others
    bad = daytime("e-bad", customer_id="bob")
    bad["data"]["customer"]["country"] = "XX"
    huge = json.dumps(daytime("e-huge", customer_id="eve")).replace('"quantity": 1', '"quantity": ' + "9" * 5000)
    body = f'[{json.dumps(daytime("e-2", customer_id="cat"))}, {json.dumps(bad)}, {huge}, ' \
           f'{json.dumps(daytime("e-3", customer_id="dan"))}]'.encode()
    response = served.post("/events", body)
    assert response.status_code == 400
    assert response.json() == {"accepted": ["e-2", "e-3"], "rejected": [
        {"index": 1, "error": "data.customer.country: must be an ISO 3166-1 alpha-2 country code"},
        {"index": 2, "error": "data.items[0].quantity: must be at most 1,000,000,000"}]}
    rows = served.stack.wait_for_states(3, ("sent",))
    assert sorted(r["customer_id"] for r in rows) == ["ann", "cat", "dan"]
    assert served.http.get("/healthz").json() == {"database": "ok", "broker": "ok"}
    metrics = served.http.get("/metrics").text
    assert 'encore_deliveries{channel="email",state="sent"} 3.0' in metrics


def _raw_request(port: int, head: bytes, chunks, timeout: float = 10.0) -> bytes:
    """Send a request by hand; returns the status line the server answered with."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server stopped reading, as it should
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    return answer.split(b"\r\n", 1)[0]


def test_a_body_over_1_mib_is_refused_without_reading_the_rest(served):
    # A declared 2 MiB body: the answer comes after only 64 KiB were sent, so the server did not wait for the rest
    head = (b"POST /events HTTP/1.1\r\nHost: encore\r\nContent-Type: application/json\r\n"
            b"X-Encore-Signature: sha256=00\r\nContent-Length: 2097152\r\n\r\n")
    assert _raw_request(served.serve.port, head, [b"[" + b" " * 65535]).startswith(b"HTTP/1.1 413")
    # Chunked, no length announced: refused once the limit is passed
    head = (b"POST /events HTTP/1.1\r\nHost: encore\r\nContent-Type: application/json\r\n"
            b"X-Encore-Signature: sha256=00\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"10000\r\n" + b" " * 65536 + b"\r\n"
    assert _raw_request(served.serve.port, head, [chunk] * 18).startswith(b"HTTP/1.1 413")
    assert served.count(InboxEvent) == 0


def test_shopify_sends_an_order_twice_one_coupon_then_a_later_order_redeems_it(served):
    # Given Shopify delivers the same orders/paid webhook twice (a retry)
    body = json.dumps(shopify_order(4001, processed_at=datetime.now(UTC), country="US")).encode()
    for _ in range(2):
        response = served.http.post("/webhooks/shopify/orders-paid", content=body,
                                    headers=shopify_headers(body, "7f8a9b0c-webhook-1"))
        assert response.status_code == 200, response.text
    # Then one coupon goes out
    [row] = served.stack.wait_for_states(1, ("sent", "scheduled"))
    assert row["customer_id"] == "shopify:115310627314723954"
    assert served.codes() == [row["code"]]
    # When a later order carries that code among its discount codes
    later = json.dumps(shopify_order(4002, processed_at=datetime.now(UTC), discount_codes=["WELCOME10", row["code"]]))
    response = served.http.post("/webhooks/shopify/orders-paid", content=later.encode(),
                                headers=shopify_headers(later.encode(), "7f8a9b0c-webhook-2"))
    assert response.status_code == 200
    # Then the coupon is redeemed by that order, and a direct redemption is refused as a repeat
    wait_until(lambda: served.stack.deliveries()[0]["redeemed_at"] is not None, timeout=30)
    again = served.post(f"/coupons/{row['code']}/redeem", {"code": row["code"], "order_id": "pos-1"})
    assert (again.status_code, again.json()["status"]) == (409, "already_redeemed")


def test_eight_concurrent_redemptions_of_one_code_exactly_one_wins(served):
    served.post("/events", daytime("e-1", customer_id="ann"))
    [code] = wait_until(lambda: served.codes(), timeout=30)
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def redeem(n: int) -> None:
        body = json.dumps({"code": code, "order_id": f"order-{n}"}).encode()
        with httpx.Client(base_url=served.serve.url, timeout=30) as client:
            barrier.wait()
            statuses.append(client.post(f"/coupons/{code}/redeem", content=body, headers=signed_headers(body)).status_code)

    threads = [threading.Thread(target=redeem, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [409] * 7


def test_one_click_unsubscribe_suppresses_a_scheduled_delivery(served):
    from coupons.unsubscribe import mint_token

    # Given a coupon waiting for the end of the customer's night
    served.post("/events", order_paid("e-1", customer_id="ann", timezone=zone_where_local_hour_is(23)))
    [row] = served.stack.wait_for_states(1, ("scheduled",))
    # When their mailbox provider follows the List-Unsubscribe link (RFC 8058: a POST, no signature)
    url = f"{served.serve.url}/unsubscribe/{mint_token(WEBHOOK_SECRET, 'ann', 'email')}"
    response = httpx.post(url, content=b"List-Unsubscribe=One-Click",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200
    # And the night ends (the delivery comes due)
    past = datetime.now(UTC) - timedelta(seconds=1)
    served.stack.query(update(Delivery).where(Delivery.id == row["id"])
                       .values(due_at=past, next_attempt_at=past).returning(Delivery.id))
    # Then it ends suppressed, and nothing was emailed
    [row] = served.stack.wait_for_states(1, ("suppressed",))
    assert row["reason"] == "no_channel"
    assert served.stack.smtp.count == 0
    # And the access log does not keep the token (it names the customer)
    assert "POST /unsubscribe/… HTTP/1.1" in served.serve.log() and url.rsplit("/", 1)[1] not in served.serve.log()
