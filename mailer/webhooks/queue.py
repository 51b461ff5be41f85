"""The webhook_deliveries table as a queue: claim due rows under a lease, record each try.

A claimed row stays `pending` and carries `lease_until`; a worker that dies leaves its rows
to be claimed again once the lease runs out. On PostgreSQL claims use FOR UPDATE SKIP
LOCKED, so several workers never take the same row. Deliveries of a disabled endpoint wait
until it is enabled again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from mailer.errors import Invalid, NotFound
from mailer.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
ERROR_EXCERPT_CHARS = 500


@dataclass(frozen=True)
class Claimed:
    """A claimed delivery with what it takes to send it."""

    delivery_id: int
    endpoint_id: int
    attempt: int
    event: str
    payload: str
    url: str
    secret: str


@dataclass(frozen=True)
class Outcome:
    """What one try at a delivery came to."""

    delivery_id: int
    attempt: int
    at: datetime
    status_code: int | None
    error: str
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def claim_due(session: Session, now: datetime, limit: int, lease: timedelta) -> list[Claimed]:
    """Side effect: up to `limit` pending rows that are due and not held by a live lease
    are leased until now + lease, their attempt counted. Returns them, oldest due first."""
    enabled = select(WebhookEndpoint.id).where(col(WebhookEndpoint.enabled).is_(True))
    statement = (
        select(col(WebhookDelivery.id))
        .where(
            col(WebhookDelivery.status) == PENDING,
            col(WebhookDelivery.next_attempt_at) <= now,
            col(WebhookDelivery.lease_until).is_(None) | (col(WebhookDelivery.lease_until) < now),
            col(WebhookDelivery.endpoint_id).in_(enabled),
        )
        .order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = [row_id for row_id in session.exec(statement) if row_id is not None]
    if not ids:
        return []
    session.execute(
        update(WebhookDelivery)
        .where(col(WebhookDelivery.id).in_(ids))
        .values(lease_until=now + lease, attempts=WebhookDelivery.attempts + 1)
    )
    rows = session.exec(
        select(WebhookDelivery, WebhookEndpoint)
        .join(WebhookEndpoint, col(WebhookEndpoint.id) == col(WebhookDelivery.endpoint_id))
        .where(col(WebhookDelivery.id).in_(ids))
        .order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id))
    ).all()
    return [
        Claimed(
            delivery_id=delivery.id,
            endpoint_id=delivery.endpoint_id,
            attempt=delivery.attempts,
            event=delivery.event,
            payload=delivery.payload,
            url=endpoint.url,
            secret=endpoint.secret,
        )
        for delivery, endpoint in rows
        if delivery.id is not None
    ]


def retry_delay(attempt: int, base_seconds: float, jitter: float | None = None) -> timedelta:
    """The wait after failed try number `attempt`: base * 2**(attempt-1), plus up to a tenth
    more at random so that many deliveries failing together do not return together."""
    spread = random.uniform(0, 0.1) if jitter is None else jitter
    return timedelta(seconds=base_seconds * 2 ** max(attempt - 1, 0) * (1 + spread))


def record(
    session: Session, outcome: Outcome, max_attempts: int, base_seconds: float
) -> str | None:
    """Side effects: the try is kept in webhook_attempts; the delivery becomes `delivered`,
    is due again after its backoff, or `failed` after `max_attempts` tries. A delivery
    dropped meanwhile (its endpoint deleted) is left alone. Returns the new status."""
    delivery = session.get(WebhookDelivery, outcome.delivery_id)
    if delivery is None or delivery.status != PENDING:
        return None
    session.add(
        WebhookAttempt(
            delivery_id=outcome.delivery_id,
            at=outcome.at,
            status_code=outcome.status_code,
            error=outcome.error[:ERROR_EXCERPT_CHARS],
            duration_ms=outcome.duration_ms,
        )
    )
    delivery.lease_until = None
    if outcome.delivered:
        delivery.status = DELIVERED
        delivery.delivered_at = outcome.at
    elif outcome.attempt >= max_attempts:
        delivery.status = FAILED
    else:
        delivery.next_attempt_at = outcome.at + retry_delay(outcome.attempt, base_seconds)
    session.add(delivery)
    return delivery.status


def retry(session: Session, delivery: WebhookDelivery, now: datetime) -> None:
    """Side effect: a failed delivery is pending again, due now, with a fresh count of tries
    (its earlier attempts stay on record)."""
    delivery.status = PENDING
    delivery.attempts = 0
    delivery.next_attempt_at = now
    delivery.lease_until = None
    session.add(delivery)


def retry_failed(session: Session, delivery: WebhookDelivery, now: datetime) -> None:
    """As `retry`, for a delivery that has failed; Invalid (a 422) for any other."""
    if delivery.status != FAILED:
        raise Invalid("delivery", f"is {delivery.status}, only a failed one can be retried")
    retry(session, delivery, now)
    session.flush()


def get_delivery(session: Session, endpoint_id: int, delivery_id: int) -> WebhookDelivery:
    """One delivery of the endpoint; NotFound for an unknown id or another endpoint's."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.endpoint_id != endpoint_id:
        raise NotFound("webhook delivery")
    return delivery


def attempts_of(session: Session, delivery_ids: list[int]) -> dict[int, list[WebhookAttempt]]:
    """Each delivery's tries, oldest first."""
    found: dict[int, list[WebhookAttempt]] = {delivery_id: [] for delivery_id in delivery_ids}
    rows = session.exec(
        select(WebhookAttempt)
        .where(col(WebhookAttempt.delivery_id).in_(delivery_ids))
        .order_by(col(WebhookAttempt.at), col(WebhookAttempt.id))
    )
    for attempt in rows:
        found[attempt.delivery_id].append(attempt)
    return found


def recent_deliveries(
    session: Session, endpoint_id: int, *, status: str | None = None, limit: int = 50
) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    """The endpoint's deliveries newest first, each with its tries (oldest first)."""
    statement = select(WebhookDelivery).where(col(WebhookDelivery.endpoint_id) == endpoint_id)
    if status is not None:
        statement = statement.where(col(WebhookDelivery.status) == status)
    newest_first = (col(WebhookDelivery.created_at).desc(), col(WebhookDelivery.id).desc())
    deliveries = list(session.exec(statement.order_by(*newest_first).limit(limit)))
    attempts = attempts_of(session, [d.id for d in deliveries if d.id is not None])
    return [(delivery, attempts.get(delivery.id or 0, [])) for delivery in deliveries]


def counts_by_endpoint(session: Session) -> dict[int, dict[str, int]]:
    """For each endpoint with deliveries: how many are pending, delivered and failed."""
    rows = session.exec(
        select(
            col(WebhookDelivery.endpoint_id), col(WebhookDelivery.status), func.count()
        ).group_by(col(WebhookDelivery.endpoint_id), col(WebhookDelivery.status))
    ).all()
    counts: dict[int, dict[str, int]] = {}
    for endpoint_id, status, count in rows:
        counts.setdefault(endpoint_id, {PENDING: 0, DELIVERED: 0, FAILED: 0})[status] = count
    return counts
