"""The suppression list: addresses that get no more mail, whatever their subscriptions say.

An entry is keyed by the address's digest, so it outlives erasure of the subscriber and
stops a later signup or import of the same address from being mailed again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlmodel import Session, col, select

from mailer.db import insert_unless_present
from mailer.models import Subscriber, Suppression, SuppressionReason
from mailer.subscriptions.addresses import address_digest


def suppress(
    session: Session,
    subscriber: Subscriber,
    reason: SuppressionReason,
    detail: str,
    now: datetime,
) -> None:
    """Side effect: a suppression for the subscriber's address, unless there is one (two
    senders suppressing the same address at once do not collide)."""
    insert_unless_present(
        session,
        Suppression,
        "address_hash",
        address_hash=address_digest(subscriber.email),
        subscriber_id=subscriber.id,
        reason=reason.value,
        detail=detail[:1000],
        created_at=now,
    )


def suppressed_ids(session: Session, subscribers: Iterable[Subscriber]) -> set[int]:
    """Which of these subscribers' addresses are suppressed (one query). By address, so a
    reader erased and signed up afresh is still recognised."""
    by_digest = {address_digest(s.email): s.id for s in subscribers if s.id is not None}
    if not by_digest:
        return set()
    statement = select(Suppression.address_hash).where(
        col(Suppression.address_hash).in_(list(by_digest))
    )
    return {by_digest[digest] for digest in session.exec(statement) if by_digest[digest]}


def reasons_by_address(session: Session, emails: Iterable[str]) -> dict[str, str]:
    """The suppression reason of each of these normalized addresses that is suppressed
    (one query), whether or not a subscriber with that address still exists."""
    by_digest = {address_digest(email): email for email in emails}
    if not by_digest:
        return {}
    statement = select(Suppression.address_hash, Suppression.reason).where(
        col(Suppression.address_hash).in_(list(by_digest))
    )
    return {by_digest[digest]: reason for digest, reason in session.exec(statement)}


def entry_for(session: Session, subscriber: Subscriber) -> Suppression | None:
    return session.exec(
        select(Suppression).where(col(Suppression.address_hash) == address_digest(subscriber.email))
    ).first()
