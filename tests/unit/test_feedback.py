"""Rule 18: bounce and complaint notices, in the SPEC's format and as Amazon SES and
SendGrid send them, say which address gets no more email."""

from __future__ import annotations

import json
from datetime import datetime, UTC

import pytest

from coupons.feedback import EmailFeedback, FeedbackError, from_ses, from_sendgrid, parse_feedback

AT = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


# -------------------------------------------------------------------- the SPEC's notice


def test_a_complaint_or_a_permanent_bounce_suppresses_a_transient_bounce_does_not():
    complaint = parse_feedback({"type": "complaint", "email": "ana@example.com", "permanent": False,
                                "occurred_at": "2026-03-01T12:30:00Z"})
    hard = parse_feedback({"type": "bounce", "email": "ana@example.com", "permanent": True,
                           "occurred_at": "2026-03-01T19:30:00+07:00"})
    soft = parse_feedback({"type": "bounce", "email": "ana@example.com", "permanent": False,
                           "occurred_at": "2026-03-01T12:30:00Z", "provider": "ses"})
    assert complaint.suppresses and hard.suppresses and not soft.suppresses
    assert hard.occurred_at == AT  # offsets become UTC, as event times do


def test_a_complaint_may_leave_permanent_out():
    notice = parse_feedback({"type": "complaint", "email": "ana@example.com", "occurred_at": "2026-03-01T12:30:00Z"})
    assert notice.suppresses


def test_the_address_is_normalized_as_customer_emails_are():
    notice = parse_feedback({"type": "bounce", "email": "Ana@EXAMPLE.com", "permanent": True,
                             "occurred_at": "2026-03-01T12:30:00Z"})
    assert notice.email == "Ana@example.com"


@pytest.mark.parametrize(
    ("notice", "field"),
    [
        ([], ""),
        ({"email": "a@example.com", "permanent": True, "occurred_at": "2026-03-01T12:30:00Z"}, "type"),
        ({"type": "unsubscribe", "email": "a@example.com", "occurred_at": "2026-03-01T12:30:00Z"}, "type"),
        ({"type": "bounce", "permanent": True, "occurred_at": "2026-03-01T12:30:00Z"}, "email"),
        ({"type": "bounce", "email": "not an address", "permanent": True, "occurred_at": "2026-03-01T12:30:00Z"},
         "email"),
        ({"type": "bounce", "email": "a@example.com", "occurred_at": "2026-03-01T12:30:00Z"}, "permanent"),
        ({"type": "bounce", "email": "a@example.com", "permanent": "yes", "occurred_at": "2026-03-01T12:30:00Z"},
         "permanent"),
        ({"type": "bounce", "email": "a@example.com", "permanent": True}, "occurred_at"),
        ({"type": "bounce", "email": "a@example.com", "permanent": True, "occurred_at": "1 March 2026"},
         "occurred_at"),
    ],
)
def test_a_broken_notice_is_refused_naming_the_field(notice, field):
    with pytest.raises(FeedbackError) as caught:
        parse_feedback(notice)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: " if field else "a feedback notice")


def test_a_notice_round_trips_through_the_spec_format():
    notice = EmailFeedback("bounce", "ana@example.com", True, AT)
    assert parse_feedback(json.loads(json.dumps(notice.as_notice()))) == notice


# ------------------------------------------------------------------------------ SES

SES_BOUNCE = {
    "notificationType": "Bounce",
    "bounce": {
        "bounceType": "Permanent", "bounceSubType": "General",
        "bouncedRecipients": [{"emailAddress": "jane@example.com", "status": "5.1.1", "action": "failed",
                               "diagnosticCode": "smtp; 550 5.1.1 <jane@example.com>... User"}],
        "timestamp": "2016-01-27T14:59:38.237Z", "feedbackId": "00000138111222aa-33322211",
        "reportingMTA": "dns; email.example.com",
    },
    "mail": {"timestamp": "2016-01-27T14:59:38.237Z", "source": "john@example.com",
             "destination": ["jane@example.com"]},
}
SES_COMPLAINT = {
    "notificationType": "Complaint",
    "complaint": {"complainedRecipients": [{"emailAddress": "richard@example.com"}],
                  "timestamp": "2016-01-27T14:59:38.237Z", "feedbackId": "0000013786031775-fea503bc",
                  "complaintFeedbackType": "abuse"},
    "mail": {"timestamp": "2016-01-27T14:59:38.237Z", "source": "john@example.com"},
}


def test_an_ses_permanent_bounce_suppresses_its_recipient():
    (notice,) = from_ses(SES_BOUNCE)
    assert (notice.type, notice.email, notice.permanent) == ("bounce", "jane@example.com", True)
    assert notice.occurred_at == datetime(2016, 1, 27, 14, 59, 38, 237000, tzinfo=UTC)


@pytest.mark.parametrize("bounce_type", ["Transient", "Undetermined"])
def test_an_ses_transient_or_undetermined_bounce_does_not_suppress(bounce_type):
    message = json.loads(json.dumps(SES_BOUNCE))
    message["bounce"]["bounceType"] = bounce_type
    assert [n.suppresses for n in from_ses(message)] == [False]


def test_an_ses_notification_gives_one_notice_per_recipient_and_reads_event_publishing_too():
    message = json.loads(json.dumps(SES_COMPLAINT))
    message["complaint"]["complainedRecipients"].append({"emailAddress": "ana@example.com"})
    message["eventType"] = message.pop("notificationType")
    assert [(n.type, n.email) for n in from_ses(message)] == [("complaint", "richard@example.com"),
                                                            ("complaint", "ana@example.com")]


def test_an_ses_not_spam_report_and_a_delivery_are_nothing_to_obey():
    message = json.loads(json.dumps(SES_COMPLAINT))
    message["complaint"]["complaintFeedbackType"] = "not-spam"
    assert from_ses(message) == []
    assert from_ses({"notificationType": "Delivery", "delivery": {}, "mail": {}}) == []


def test_the_sns_envelope_is_opened_and_a_subscription_confirmation_is_named():
    envelope = {"Type": "Notification", "MessageId": "22b80b92", "TopicArn": "arn:aws:sns:us-west-2:1:ses",
                "Message": json.dumps(SES_BOUNCE), "Timestamp": "2016-01-27T14:59:39.000Z"}
    assert [n.email for n in from_ses(envelope)] == ["jane@example.com"]
    with pytest.raises(FeedbackError, match="^Type: an SNS subscription confirmation"):
        from_ses({"Type": "SubscriptionConfirmation", "SubscribeURL": "https://sns.example/confirm"})
    with pytest.raises(FeedbackError, match="^Message: "):
        from_ses({"Type": "Notification", "Message": "{not json"})


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: m["bounce"].update(bounceType="Soft"), "bounce.bounceType"),
        (lambda m: m["bounce"].pop("timestamp"), "bounce.timestamp"),
        (lambda m: m["bounce"].update(bouncedRecipients=[]), "bounce.bouncedRecipients"),
        (lambda m: m["bounce"]["bouncedRecipients"].append({"emailAddress": "nobody"}),
         "bounce.bouncedRecipients[1].emailAddress"),
        (lambda m: m.pop("bounce"), "bounce"),
        (lambda m: m.pop("notificationType"), "eventType"),
    ],
)
def test_a_broken_ses_notification_is_refused_naming_the_field(change, field):
    message = json.loads(json.dumps(SES_BOUNCE))
    change(message)
    with pytest.raises(FeedbackError) as caught:
        from_ses(message)
    assert caught.value.field == field


# -------------------------------------------------------------------------- SendGrid


def sendgrid(event: str, **fields) -> dict:
    return {"email": "ana@example.com", "timestamp": 1772368200, "event": event,
            "sg_event_id": "sg_event_id", "sg_message_id": "sg_message_id", **fields}


def test_sendgrid_bounces_spam_reports_and_drops_become_notices():
    notices = from_sendgrid([
        sendgrid("processed"),
        sendgrid("bounce", type="bounce", reason="500 unknown recipient", status="5.0.0"),
        sendgrid("bounce", type="blocked", reason="IP blocked", status="5.7.1"),
        sendgrid("spamreport"),
        sendgrid("dropped", reason="Bounced Address"),
        sendgrid("dropped", reason="Spam Reporting Address"),
        sendgrid("dropped", reason="Unsubscribed Address"),
        sendgrid("deferred", response="400 try again later", attempt="5"),
        sendgrid("delivered"),
        sendgrid("open"),
    ])
    assert [(n.type, n.permanent, n.suppresses) for n in notices] == [
        ("bounce", True, True),
        ("bounce", False, False),  # a block is about the message, not the address
        ("complaint", True, True),
        ("bounce", True, True),
        ("complaint", True, True),
    ]
    assert notices[0].occurred_at == AT and notices[0].email == "ana@example.com"


@pytest.mark.parametrize(
    ("events", "field"),
    [
        ({"event": "bounce"}, ""),
        ([sendgrid("bounce", email="nobody")], "[0].email"),
        ([sendgrid("processed"), sendgrid("spamreport", timestamp="yesterday")], "[1].timestamp"),
        ([sendgrid("spamreport", timestamp=True)], "[0].timestamp"),
        ([sendgrid("bounce"), "bounce"], "[1]"),
    ],
)
def test_a_broken_sendgrid_post_is_refused_naming_the_field(events, field):
    with pytest.raises(FeedbackError) as caught:
        from_sendgrid(events)
    assert caught.value.field == field
