"""Queueing webhook events: one delivery row per subscribed endpoint, in the caller's transaction.

`emit` only adds rows to the session it is given; the event is queued if and only if that
transaction commits (a durable outbox). The worker in `mailer.webhooks.delivery` sends them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from mailer.models import Subscriber, WebhookDelivery, WebhookEndpoint, WebhookEvent

PING = "ping"
"""The event a test delivery carries; endpoints receive it whatever they subscribed to."""


def iso(at: datetime) -> str:
    """A moment as ISO 8601 in UTC (stored naive times are UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat()


def payload_json(delivery_id: int, event: str, data: dict[str, Any], created_at: datetime) -> str:
    """The exact body a delivery sends (and signs)."""
    body = {"id": delivery_id, "event": event, "created_at": iso(created_at), "data": data}
    return json.dumps(body, separators=(",", ":"), sort_keys=True, default=str)


def subscriber_data(
    subscriber: Subscriber, lists: list[str], at: datetime, **extra: Any
) -> dict[str, Any]:
    """The `data` of a subscriber.* event: who (id and address), which lists, when."""
    return {
        "subscriber_id": subscriber.id,
        "email": subscriber.email,
        "lists": sorted(lists),
        "at": iso(at),
        **extra,
    }


def queue(
    session: Session, endpoint_id: int, event: str, data: dict[str, Any], now: datetime
) -> WebhookDelivery:
    """Side effect: adds one pending delivery of `event` to one endpoint, due now."""
    delivery = WebhookDelivery(
        endpoint_id=endpoint_id,
        event=event,
        payload="{}",
        status="pending",
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    session.flush()
    assert delivery.id is not None
    delivery.payload = payload_json(delivery.id, event, data, now)
    session.add(delivery)
    return delivery


_SUBSCRIBED = "mailer.webhooks.subscribed"


def subscribed_endpoints(session: Session) -> list[tuple[int, list[str]]]:
    """(id, events) of every enabled endpoint, read once per transaction (an import emits
    an event per row) and read again after `forget_endpoints`."""
    transaction = session.get_transaction()
    cached = session.info.get(_SUBSCRIBED)
    if cached is not None and transaction is not None and cached[0] is transaction:
        return list(cached[1])
    rows = session.exec(
        select(WebhookEndpoint.id, WebhookEndpoint.events)
        .where(col(WebhookEndpoint.enabled).is_(True))
        .order_by(col(WebhookEndpoint.id))
    ).all()
    found = [(endpoint_id, list(names)) for endpoint_id, names in rows if endpoint_id is not None]
    session.info[_SUBSCRIBED] = (transaction, found)
    return found


def forget_endpoints(session: Session) -> None:
    """Side effect: the next `emit` in this session reads the endpoints afresh."""
    session.info.pop(_SUBSCRIBED, None)


def emit(session: Session, event: WebhookEvent, data: dict[str, Any], now: datetime) -> None:
    """Side effect: queues `event` for every enabled endpoint subscribed to it, in the
    session's transaction (nothing is sent if the caller rolls back)."""
    for endpoint_id, names in subscribed_endpoints(session):
        if str(event) in names:
            queue(session, endpoint_id, str(event), data, now)
