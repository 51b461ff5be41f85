"""Mailgun's webhooks for failed deliveries and complaints.

Each notification carries `signature: {timestamp, token, signature}`, the signature being
HMAC-SHA256 of timestamp + token under `[bounces] mailgun_signing_key`. It is checked in
constant time and refused when the timestamp is more than 15 minutes away. As the
signature does not cover the event, a token is good for one notification only: a second
use with another event is refused (mailer.bounces.replay), and the same event again (by
its token or its `event-data.id`, which Mailgun keeps when it retries) is acted on once.
`failed` events are bounces (`severity` permanent or temporary), `complained` events
abuse reports.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from mailer.bounces.classify import find_status
from mailer.bounces.handling import Report
from mailer.bounces.providers.base import Notification, Refused, json_object, mapping, text
from mailer.bounces.replay import Identity, Key, canonical
from mailer.bounces.verp import outbox_id_in
from mailer.clock import Clock
from mailer.config import BounceSettings
from mailer.tokens import Signer

MAX_AGE_SECONDS = 15 * 60
TOKEN_KEPT = timedelta(seconds=2 * MAX_AGE_SECONDS)
"""How long past its timestamp a used token is remembered: past the window, with room for
clocks that differ between processes."""
EVENT_KEPT = timedelta(hours=9)
"""How long an acted-on event's id is remembered: Mailgun retries for 8 hours."""
ALREADY_BOUNCED = "5.1.1"
"""Mailgun's `suppress-bounce`: it sent nothing because the address bounced before."""


class MailgunReceiver:
    """POST /webhooks/bounces/mailgun: `failed` and `complained` events."""

    name = "mailgun"

    def __init__(self, settings: BounceSettings, signer: Signer, clock: Clock) -> None:
        self.settings = settings
        self.signer = signer
        self.clock = clock

    @property
    def configured(self) -> bool:
        return bool(self.settings.mailgun_signing_key.get_secret_value())

    async def receive(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        notification = json_object(body)
        token, signed_at = self._check_signature(mapping(notification.get("signature")))
        event = mapping(notification.get("event-data"))
        reports = self._reports(event)
        # The token is spent whatever the event, so that a captured signature of an event
        # not acted on (a delivery) cannot carry a complaint either.
        keys = [Key(f"token:{token}", signed_at + TOKEN_KEPT)]
        event_id = text(event.get("id"), 256)
        if reports and event_id:
            keys.append(Key(f"event:{event_id}", self.clock.now() + EVENT_KEPT))
        return Notification(reports, Identity(tuple(keys), canonical(event)))

    def _reports(self, event: dict[str, Any]) -> list[Report]:
        name = text(event.get("event"), 32)
        address = text(event.get("recipient"), 320)
        outbox_id = outbox_id_in(
            text(mapping(event.get("envelope")).get("sender"), 320), self.signer
        )
        if name == "complained":
            return [
                Report(
                    source=self.name,
                    action="abuse",
                    complaint=True,
                    detail="complaint",
                    outbox_id=outbox_id,
                    address=address,
                )
            ]
        if name != "failed":
            return []
        return [self._failure(event, address, outbox_id)]

    def _failure(self, event: dict[str, Any], address: str, outbox_id: int | None) -> Report:
        delivery = mapping(event.get("delivery-status"))
        message = " ".join(
            part
            for part in (text(delivery.get("message")), text(delivery.get("description")))
            if part
        )
        status = find_status(text(delivery.get("enhanced-code"), 16)) or find_status(message)
        severity = text(event.get("severity"), 16)
        reason = text(event.get("reason"), 32)
        if not status and severity == "permanent" and reason == "suppress-bounce":
            status = ALREADY_BOUNCED
        code = text(delivery.get("code"), 8)
        return Report(
            source=self.name,
            status=status,
            # A temporary failure is one Mailgun retries: a delay, whatever the code says.
            action="delayed" if severity == "temporary" else "failed",
            detail=f"{severity or 'unknown'} {reason or ''} {code} {message}".strip(),
            outbox_id=outbox_id,
            address=address,
        )

    def _check_signature(self, signature: dict[str, Any]) -> tuple[str, datetime]:
        """The signature's token and time, once the signature checks out."""
        timestamp = text(signature.get("timestamp"), 32)
        token = text(signature.get("token"), 256)
        given = text(signature.get("signature"), 128)
        if not (timestamp and token and given):
            raise Refused(403, "the notification is not signed")
        key = self.settings.mailgun_signing_key.get_secret_value().encode()
        expected = hmac.new(key, (timestamp + token).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.lower().encode(), expected.encode()):
            raise Refused(403, "the signature does not match")
        try:
            signed_at = float(timestamp)
        except ValueError as exc:
            raise Refused(403, "the signature's timestamp is not a number") from exc
        if not math.isfinite(signed_at) or (
            abs(self.clock.now().timestamp() - signed_at) > MAX_AGE_SECONDS
        ):
            raise Refused(403, "the signature is more than 15 minutes old (or ahead)")
        return token, datetime.fromtimestamp(signed_at, UTC)
