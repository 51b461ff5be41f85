"""The suppression list: addresses that get no more mail, whatever their subscriptions say.

An entry is keyed by the address's digest, so it outlives erasure of the subscriber and
stops a later signup or import of the same address from being mailed again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import insert
from sqlmodel import Session, col, select

from mailer.models import Subscriber, Suppression, SuppressionReason
from mailer.subscriptions.addresses import address_digest


def suppress(
    session: Session,
    subscriber: Subscriber,
    reason: SuppressionReason,
    detail: str,
    now: datetime,
) -> None:
    """Side effect: a suppression for the subscriber's address, unless there is one."""
    digest = address_digest(subscriber.email)
    exists = session.exec(
        select(Suppression.id).where(col(Suppression.address_hash) == digest)
    ).first()
    if exists is None:
        session.execute(
            insert(Suppression).values(
                address_hash=digest,
                subscriber_id=subscriber.id,
                reason=reason.value,
                detail=detail[:1000],
                created_at=now,
            )
        )


def suppressed_ids(session: Session, subscriber_ids: Iterable[int]) -> set[int]:
    """Which of these subscribers are suppressed (one query)."""
    ids = list(subscriber_ids)
    if not ids:
        return set()
    statement = select(Suppression.subscriber_id).where(col(Suppression.subscriber_id).in_(ids))
    return {subscriber_id for subscriber_id in session.exec(statement) if subscriber_id}


def entry_for(session: Session, subscriber: Subscriber) -> Suppression | None:
    return session.exec(
        select(Suppression).where(col(Suppression.address_hash) == address_digest(subscriber.email))
    ).first()
