"""The service tier itself: an order placed at noon reaches the customer once."""

from tests.support import order_paid


def test_an_order_is_sent_once_by_email_at_its_trigger(services):
    # Given an order of a US customer who consented to email
    rejected = services.emit(order_paid("e1", customer_id="c1", occurred_at=services.clock(), timezone="UTC"))
    assert rejected == []
    # When the relay runs twice
    services.relay_and_send()
    services.relay_and_send()
    # Then exactly one email went out and the delivery is sent
    assert services.smtp.count == 1
    [row] = services.deliveries()
    assert row["state"] == "sent"
    assert row["sent_at"] is not None
