"""Leaving and the preference centre: unsubscribe now, resubscribe only by confirming."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from mailer.models import (
    Confirmation,
    ConsentAction,
    MailingList,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    SubscriptionStatus,
)
from mailer.subscriptions import ledger
from mailer.subscriptions.signup import lock_subscriber, subscriptions_by_list


def unsubscribe(
    session: Session,
    subscriber_id: int,
    list_ids: set[int] | None,
    context: ledger.ConsentContext,
    now: datetime,
) -> list[str]:
    """Unsubscribe from `list_ids` (all lists when None); returns the slugs left. Idempotent."""
    subscriber = lock_subscriber(session, subscriber_id)
    left: list[str] = []
    for list_id, subscription in subscriptions_by_list(session, subscriber_id).items():
        if list_ids is not None and list_id not in list_ids:
            continue
        if subscription.status == SubscriptionStatus.unsubscribed:
            continue
        subscription.status = SubscriptionStatus.unsubscribed
        subscription.updated_at = now
        session.add(subscription)
        mailing_list = session.get(MailingList, list_id)
        left.append(mailing_list.slug if mailing_list else str(list_id))
    if left:
        _revoke_open_confirmations(session, subscriber_id, now)
        ledger.append(session, subscriber, ConsentAction.unsubscribed, left, context, now)
    return left


def _revoke_open_confirmations(session: Session, subscriber_id: int, now: datetime) -> None:
    # An older confirm link must not bring a reader back after they left.
    session.execute(
        update(Confirmation)
        .where(
            col(Confirmation.subscriber_id) == subscriber_id,
            col(Confirmation.used_at).is_(None),
            col(Confirmation.revoked_at).is_(None),
        )
        .values(revoked_at=now)
    )
    session.execute(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.subscriber_id) == subscriber_id,
            col(OutboxMessage.kind) == OutboxKind.confirmation,
            col(OutboxMessage.status) == OutboxStatus.queued,
        )
        .values(status=OutboxStatus.superseded)
    )


def list_statuses(session: Session, subscriber_id: int) -> list[tuple[MailingList, str | None]]:
    """Every list with this subscriber's status on it (None where never subscribed)."""
    current = subscriptions_by_list(session, subscriber_id)
    lists = session.scalars(select(MailingList).order_by(col(MailingList.name)))
    return [
        (mailing_list, current[mailing_list.id].status if mailing_list.id in current else None)
        for mailing_list in lists
    ]
