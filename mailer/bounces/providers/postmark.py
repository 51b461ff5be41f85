"""Postmark's bounce and spam-complaint webhooks.

Postmark signs nothing; the webhook URL carries HTTP basic-auth credentials, checked here
against `[bounces] postmark_username` and `postmark_password`. Nothing binds a body to a
time or to the credentials, so a record acted on is remembered by its own `ID` (or, for
a record without one, its MessageID, RecordType and time) for 30 days: the same record
again changes nothing, another body under a spent ID is refused. Whoever holds the
credentials can still post records of their own; keep them long, random and on HTTPS
only. A bounce's `Type` stands
for the RFC 3463 status it implies when its `Details` quote none; a spam complaint is an
abuse report. Other record types (deliveries, opens, ...) and bounce types
(auto-responders, spam notifications, ...) carry nothing to act on.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from mailer.bounces.classify import find_status
from mailer.bounces.handling import Report
from mailer.bounces.providers.base import Notification, Refused, json_object, text
from mailer.bounces.replay import Identity, Key, canonical
from mailer.clock import Clock
from mailer.config import BounceSettings

CHALLENGE = {"WWW-Authenticate": 'Basic realm="mailer bounces", charset="UTF-8"'}
TYPE_STATUS = {
    "HardBounce": "5.1.1",
    "BadEmailAddress": "5.1.3",
    "SoftBounce": "4.0.0",
    "Transient": "4.0.0",
    "DMARCPolicy": "5.7.26",
}
"""Bounce types acted on, with the status each implies when the details give none."""
COMPLAINT_TYPES = {"SpamComplaint"}
RECORD_KEPT = timedelta(days=30)
"""How long an acted-on record's ID is remembered (Postmark retries for hours, and
nothing else in a record ages)."""


class PostmarkReceiver:
    """POST /webhooks/bounces/postmark: Bounce and SpamComplaint webhooks."""

    name = "postmark"

    def __init__(self, settings: BounceSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock

    @property
    def configured(self) -> bool:
        return bool(self.settings.postmark_username)

    async def receive(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        self._check_credentials(headers.get("authorization", ""))
        record = json_object(body)
        reports = self._reports(record)
        if not reports:
            return Notification(reports)
        key = Key(f"record:{record_key(record)}", self.clock.now() + RECORD_KEPT)
        return Notification(reports, Identity((key,), canonical(record)))

    def _reports(self, record: dict[str, Any]) -> list[Report]:
        record_type = text(record.get("RecordType"), 64)
        bounce_type = text(record.get("Type"), 64)
        address = text(record.get("Email"), 320)
        if record_type == "SpamComplaint" or (
            record_type == "Bounce" and bounce_type in COMPLAINT_TYPES
        ):
            return [
                Report(
                    source=self.name,
                    action="abuse",
                    complaint=True,
                    detail="spam complaint",
                    address=address,
                )
            ]
        if record_type != "Bounce" or bounce_type not in TYPE_STATUS:
            return []
        details = text(record.get("Details"))
        description = text(record.get("Description"))
        return [
            Report(
                source=self.name,
                status=find_status(details) or TYPE_STATUS[bounce_type],
                detail=f"{bounce_type}: {details or description}",
                address=address,
            )
        ]

    def _check_credentials(self, authorization: str) -> None:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise Refused(401, "basic-auth credentials are required", CHALLENGE)
        try:
            username, colon, password = (
                base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
            )
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise Refused(401, "malformed basic-auth credentials", CHALLENGE) from exc
        expected_password = self.settings.postmark_password.get_secret_value()
        # Both compared every time, so the answer's timing does not tell which was wrong.
        username_ok = hmac.compare_digest(
            username.encode(), self.settings.postmark_username.encode()
        )
        password_ok = hmac.compare_digest(password.encode(), expected_password.encode())
        if not (colon and username_ok and password_ok):
            raise Refused(401, "wrong basic-auth credentials", CHALLENGE)


def record_key(record: dict[str, Any]) -> str:
    """What identifies a record: its RecordType and ID; without an ID, its MessageID and
    time; without those either, the whole record."""
    record_type = text(record.get("RecordType"), 64)
    record_id = text(record.get("ID"), 64)
    if record_id:
        return f"{record_type}:id:{record_id}"
    message_id = text(record.get("MessageID"), 256)
    at = text(record.get("BouncedAt") or record.get("ReceivedAt"), 64)
    if message_id and at:
        return f"{record_type}:message:{message_id}:{at}"
    return f"{record_type}:body:{canonical(record)}"
