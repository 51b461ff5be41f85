"""A subscriber as editors see it (SubscriberPublic): subscriptions, suppression and the
consent history. Shown by the editors' API and the admin pages alike."""

from __future__ import annotations

from sqlmodel import Session, col, select

from mailer.models import MailingList, Subscriber, Subscription
from mailer.schemas import (
    ConsentEventPublic,
    SubscriberPublic,
    SubscriptionPublic,
    SuppressionPublic,
)
from mailer.subscriptions import ledger, suppression


def public(session: Session, subscriber: Subscriber) -> SubscriberPublic:
    """`subscriber` with their subscriptions, suppression and consent events."""
    assert subscriber.id is not None
    rows = session.execute(
        select(Subscription, MailingList)
        .join(MailingList, col(MailingList.id) == Subscription.list_id)
        .where(col(Subscription.subscriber_id) == subscriber.id)
        .order_by(col(MailingList.slug))
    )
    return SubscriberPublic(
        id=subscriber.id,
        email=subscriber.email,
        name=subscriber.name,
        created_at=subscriber.created_at,
        erased=subscriber.erased_at is not None,
        suppression=_suppression(session, subscriber),
        lists=[
            SubscriptionPublic(
                slug=item.slug,
                name=item.name,
                status=sub.status,
                subscribed_at=sub.created_at,
                confirmed_at=sub.confirmed_at,
            )
            for sub, item in rows
        ],
        consent_events=[
            ConsentEventPublic.model_validate(event, from_attributes=True)
            for event in ledger.events_of(session, subscriber.id)
        ],
    )


def _suppression(session: Session, subscriber: Subscriber) -> SuppressionPublic | None:
    entry = suppression.entry_for(session, subscriber)
    if entry is None:
        return None
    return SuppressionPublic(reason=entry.reason, detail=entry.detail, at=entry.created_at)
