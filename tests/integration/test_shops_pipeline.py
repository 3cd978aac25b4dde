"""Two shops through the whole pipeline (SPEC section 7): a real Celery worker on
PostgreSQL and Redis, Apprise delivering to a real SMTP server. The same customer and
stream ids in two shops stay two customers and two streams, and each message is signed
by its own shop."""

from __future__ import annotations

from tests.support import order_paid, running_stack, stream_ended, wait_until, zone_where_local_hour_is

SHOPS_FILE = """
[shops.glow]
platform = "none"
brand = "Glow"

[shops.lumi]
platform = "none"
"""


def test_the_same_ids_in_two_shops_become_two_coupons_each_signed_by_its_shop(monkeypatch, tmp_path, postgres_url,
                                                                              redis_url):
    shops = tmp_path / "shops.toml"
    shops.write_text(SHOPS_FILE)
    with running_stack(monkeypatch, database_url=postgres_url, broker_url=redis_url, data_dir=tmp_path,
                       env={"ENCORE_SHOPS_FILE": str(shops)}) as stack:
        zone = zone_where_local_hour_is(13)
        # Given customer "ann" buying in stream "live-1" of both shops, and only glow's stream ending
        report = stack.emit(*[{**order_paid(f"e-{shop}", customer_id="ann", stream_id="live-1", timezone=zone),
                               "shop": shop} for shop in ("glow", "lumi")],
                            {**stream_ended("end", "live-1"), "shop": "glow"},
                            {**order_paid("e-x", customer_id="ann", timezone=zone), "shop": "elsewhere"})
        # Then the event of an unknown shop alone is rejected
        assert (report.accepted, report.rejected) == (3, 1)
        # And glow's ann gets glow's coupon, signed Glow; lumi's ann waits for lumi's stream
        assert stack.smtp.wait_for(1, timeout=60)
        [row] = stack.wait_for_states(1, ("sent",))
        assert (row["shop"], row["customer_id"], row["trigger"]) == ("glow", "ann", "stream")
        body = stack.smtp.messages[0].get_body(("plain",)).get_content()
        assert row["code"] in body and "Glow" in body
        # When lumi's stream ends, lumi's ann gets a coupon of her own, signed with the shop's name
        stack.emit({**stream_ended("end", "live-1"), "shop": "lumi"})
        assert stack.smtp.wait_for(2, timeout=60)

        def both_sent() -> list[dict] | None:
            sent = [r for r in stack.deliveries() if r["state"] == "sent"]
            return sent if len(sent) == 2 else None

        rows = wait_until(both_sent, timeout=60)
        codes = {r["shop"]: r["code"] for r in rows}
        assert set(codes) == {"glow", "lumi"} and codes["glow"] != codes["lumi"]
        lumi_mail = next(m for m in stack.smtp.messages if codes["lumi"] in m.get_body(("plain",)).get_content())
        assert "lumi" in lumi_mail.get_body(("plain",)).get_content()
