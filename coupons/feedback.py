"""Email bounces and complaints (SPEC rule 18): the notice `POST /webhooks/email/feedback`
takes, and the same notices read from Amazon SES and SendGrid. Pure; see
coupons/FEEDBACK.md for how to connect each provider.

    {"type": "bounce" | "complaint", "email": "...", "permanent": true, "occurred_at": "..."}

A complaint or a permanent bounce suppresses the address on email from then on
(reason `email_suppressed`); a transient bounce counts against the delivery like a
transient failure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, UTC
from typing import Any, Literal

from coupons.events import EventError, _email, _timestamp

FeedbackType = Literal["bounce", "complaint"]


class FeedbackError(EventError):
    """A refused feedback notice; `field` is the dotted path of the field at fault."""


@dataclass(frozen=True)
class EmailFeedback:
    type: FeedbackType
    email: str  # normalized as customer emails are (coupons.events)
    permanent: bool
    occurred_at: datetime  # aware, UTC

    @property
    def suppresses(self) -> bool:
        """Whether the address gets no more email (SPEC rule 18)."""
        return self.type == "complaint" or self.permanent

    def as_notice(self) -> dict[str, Any]:
        """The notice in the SPEC's format (what a forwarder posts)."""
        return {"type": self.type, "email": self.email, "permanent": self.permanent,
                "occurred_at": self.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}


def parse_feedback(obj: Any) -> EmailFeedback:
    """One notice in the SPEC's format; raises FeedbackError naming the field. Unknown
    extra fields are ignored (as in events). `permanent` is required for a bounce; a
    complaint always suppresses, so there it may be left out."""
    if not isinstance(obj, dict):
        raise FeedbackError("", "a feedback notice must be a JSON object")
    kind = obj.get("type")
    if kind not in ("bounce", "complaint"):
        raise FeedbackError("type", "must be one of bounce, complaint")
    email = _field("email", obj.get("email"), _email)
    permanent = obj.get("permanent", None if kind == "bounce" else False)
    if not isinstance(permanent, bool):
        raise FeedbackError("permanent", "must be true or false")
    occurred_at = _field("occurred_at", obj.get("occurred_at"), _timestamp)
    return EmailFeedback(type=kind, email=email, permanent=permanent, occurred_at=occurred_at)


# ------------------------------------------------------------------------ Amazon SES

_SES_BOUNCE_TYPES = {"Permanent": True, "Transient": False, "Undetermined": False}


def from_ses(message: Any) -> list[EmailFeedback]:
    """The notices in one Amazon SES notification (or its SNS envelope): one per bounced
    or complaining recipient; a Delivery notification gives none.

    `bounce.bounceType` Permanent suppresses; Transient and Undetermined do not. A
    complaint with `complaintFeedbackType` "not-spam" is not a complaint."""
    message = _unwrap_sns(message)
    if not isinstance(message, dict):
        raise FeedbackError("", "an SES notification must be a JSON object")
    # Notifications say notificationType; event publishing says eventType.
    key = "notificationType" if "notificationType" in message else "eventType"
    kind = message.get(key)
    if kind == "Bounce":
        bounce = _object(message, "bounce")
        bounce_type = bounce.get("bounceType")
        if bounce_type not in _SES_BOUNCE_TYPES:
            raise FeedbackError("bounce.bounceType", "must be one of Permanent, Transient, Undetermined")
        at = _field("bounce.timestamp", bounce.get("timestamp"), _timestamp)
        emails = _recipients(bounce, "bounce", "bouncedRecipients")
        return [EmailFeedback("bounce", email, _SES_BOUNCE_TYPES[bounce_type], at) for email in emails]
    if kind == "Complaint":
        complaint = _object(message, "complaint")
        if complaint.get("complaintFeedbackType") == "not-spam":
            return []
        at = _field("complaint.timestamp", complaint.get("timestamp"), _timestamp)
        emails = _recipients(complaint, "complaint", "complainedRecipients")
        return [EmailFeedback("complaint", email, True, at) for email in emails]
    if isinstance(kind, str):
        return []  # Delivery, Send, Open, ...: nothing to obey
    raise FeedbackError(key, "must name the notification (Bounce, Complaint, Delivery)")


def _unwrap_sns(message: Any) -> Any:
    """An SNS HTTP(S) delivery wraps the SES notification as a JSON string in Message."""
    if not isinstance(message, dict) or "Type" not in message:
        return message
    if message["Type"] == "SubscriptionConfirmation":
        raise FeedbackError("Type", "an SNS subscription confirmation: confirm it by visiting its SubscribeURL")
    if message["Type"] != "Notification" or not isinstance(message.get("Message"), str):
        raise FeedbackError("Type", "must be an SNS Notification carrying an SES notification in Message")
    try:
        return json.loads(message["Message"])
    except ValueError:
        raise FeedbackError("Message", "must hold the SES notification as JSON") from None


def _object(message: dict[str, Any], name: str) -> dict[str, Any]:
    value = message.get(name)
    if not isinstance(value, dict):
        raise FeedbackError(name, "must be an object")
    return value


def _recipients(part: dict[str, Any], name: str, key: str) -> list[str]:
    recipients = part.get(key)
    if not isinstance(recipients, list) or not recipients:
        raise FeedbackError(f"{name}.{key}", "must be a non-empty list")
    emails = []
    for index, recipient in enumerate(recipients):
        where = f"{name}.{key}[{index}].emailAddress"
        emails.append(_field(where, recipient.get("emailAddress") if isinstance(recipient, dict) else None, _email))
    return emails


# --------------------------------------------------------------------------- SendGrid

# `dropped` events SendGrid sends because of its own suppression lists.
_SENDGRID_DROPPED = {"Bounced Address": ("bounce", True), "Spam Reporting Address": ("complaint", True)}


def from_sendgrid(events: Any) -> list[EmailFeedback]:
    """The notices in one SendGrid Event Webhook post (a JSON array of events).

    `bounce` with `type` "bounce" is permanent, with "blocked" transient (SendGrid does
    not suppress blocks); `spamreport` is a complaint; `dropped` counts when SendGrid
    dropped the message for a bounced or spam-reporting address. Other events
    (processed, delivered, deferred, open, click, ...) give none."""
    if not isinstance(events, list):
        raise FeedbackError("", "a SendGrid Event Webhook post must be a JSON array of events")
    notices: list[EmailFeedback] = []
    for index, event in enumerate(events):
        where = f"[{index}]"
        if not isinstance(event, dict):
            raise FeedbackError(where, "must be an object")
        name = event.get("event")
        if name == "bounce":
            kind, permanent = "bounce", event.get("type", "bounce") != "blocked"
        elif name == "spamreport":
            kind, permanent = "complaint", True
        elif name == "dropped" and event.get("reason") in _SENDGRID_DROPPED:
            kind, permanent = _SENDGRID_DROPPED[event["reason"]]
        else:
            continue
        email = _field(f"{where}.email", event.get("email"), _email)
        at = _field(f"{where}.timestamp", event.get("timestamp"), _unix_time)
        notices.append(EmailFeedback(kind, email, permanent, at))  # type: ignore[arg-type]
    return notices


def _unix_time(value: Any) -> datetime:
    if type(value) is not int or value <= 0:
        raise ValueError("must be a Unix time in seconds")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError("must be a Unix time in seconds") from None


def _field(name: str, value: Any, check) -> Any:
    if value is None:
        raise FeedbackError(name, "required")
    try:
        return check(value)
    except ValueError as error:
        raise FeedbackError(name, str(error)) from None
