"""Personal data in the webhook queue: a reader's address scrubbed on erasure, and old
deliveries dropped after [webhooks] keep_days.

A payload is kept to be sent (and shown to editors) exactly; a subscriber's address is in
it, so erasing the subscriber rewrites those payloads, pending ones included: a delivery
not yet made carries the erased placeholder, never the address.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, col, select

from mailer.models import WebhookAttempt, WebhookDelivery
from mailer.webhooks.queue import PENDING

ERASED = "(erased)"


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def forget_address(session: Session, email: str, replacement: str) -> int:
    """Side effect: every payload naming `email` names `replacement` instead, and tries
    whose answer quoted the address show "(erased)". Returns how many deliveries changed."""
    needle = '"email":' + json.dumps(email)
    deliveries = session.exec(
        select(WebhookDelivery).where(
            col(WebhookDelivery.payload).like(f"%{_like_literal(needle)}%", escape="\\")
        )
    ).all()
    for delivery in deliveries:
        body: dict[str, Any] = json.loads(delivery.payload)
        if isinstance(body.get("data"), dict) and body["data"].get("email") == email:
            body["data"]["email"] = replacement
        delivery.payload = json.dumps(body, separators=(",", ":"), sort_keys=True)
        session.add(delivery)
    ids = [delivery.id for delivery in deliveries if delivery.id is not None]
    if ids:
        quoting = session.exec(
            select(WebhookAttempt).where(
                col(WebhookAttempt.delivery_id).in_(ids),
                col(WebhookAttempt.error).like(f"%{_like_literal(email)}%", escape="\\"),
            )
        ).all()
        for attempt in quoting:
            attempt.error = ERASED
            session.add(attempt)
    return len(deliveries)


def purge_older_than(session: Session, keep: timedelta, now: datetime) -> int:
    """Side effect: deliveries made or given up on before now - keep are deleted with their
    tries (pending ones stay, however old). Returns how many went."""
    done_and_old = (
        col(WebhookDelivery.status) != PENDING,
        col(WebhookDelivery.created_at) < now - keep,
    )
    old = select(WebhookDelivery.id).where(*done_and_old)
    session.execute(delete(WebhookAttempt).where(col(WebhookAttempt.delivery_id).in_(old)))
    purged = session.execute(delete(WebhookDelivery).where(*done_and_old))
    return int(purged.rowcount or 0)  # type: ignore[attr-defined]
