"""Leaving and the preference centre: unsubscribe now, resubscribe only by confirming."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from sqlmodel import Session, col, select

from mailer.errors import NotFound
from mailer.models import (
    ConsentAction,
    Digest,
    MailingList,
    Subscriber,
    SubscriberMerge,
    SubscriptionStatus,
    WebhookEvent,
)
from mailer.subscriptions import ledger
from mailer.subscriptions.signup import (
    lock_subscriber,
    revoke_open_confirmations,
    subscriptions_by_list,
)
from mailer.tokens import BadToken, Purpose, Signer
from mailer.webhooks import events


def unsubscribe_target(signer: Signer, token: str) -> tuple[int, int | None]:
    """The subscriber and the list (None: every list) an unsubscribe token names, from a
    link or a List-Unsubscribe header; NotFound when it is not a valid one."""
    try:
        data = signer.verify(Purpose.unsubscribe, token)
    except BadToken as exc:
        raise NotFound("token") from exc
    subscriber_id, list_id = data.get("s"), data.get("l")
    if not isinstance(subscriber_id, int) or not isinstance(list_id, int | None):
        raise NotFound("token")
    return subscriber_id, list_id


def surviving_id(session: Session, subscriber_id: int) -> int:
    """The subscriber a token's id stands for now: a row merged into another with the same
    canonical address (migration 0012) stands for that one."""
    if session.get(Subscriber, subscriber_id) is not None:
        return subscriber_id
    merge = session.get(SubscriberMerge, subscriber_id)
    return merge.subscriber_id if merge is not None else subscriber_id


def unsubscribe(
    session: Session,
    subscriber_id: int,
    list_ids: set[int] | None,
    context: ledger.ConsentContext,
    now: datetime,
) -> list[str]:
    """Unsubscribe from `list_ids` (all lists when None); returns the slugs left. Idempotent."""
    subscriber_id = surviving_id(session, subscriber_id)
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
        # An older confirm link must not bring a reader back after they left.
        revoke_open_confirmations(session, subscriber_id, now)
        ledger.append(session, subscriber, ConsentAction.unsubscribed, left, context, now)
        data = events.subscriber_data(subscriber, left, now)
        events.emit(session, WebhookEvent.subscriber_unsubscribed, data, now)
    return left


def list_statuses(session: Session, subscriber_id: int) -> list[tuple[MailingList, str | None]]:
    """Every list with this subscriber's status on it (None where never subscribed)."""
    current = subscriptions_by_list(session, subscriber_id)
    lists = session.scalars(select(MailingList).order_by(col(MailingList.name)))
    return [
        (mailing_list, current[mailing_list.id].status if mailing_list.id in current else None)
        for mailing_list in lists
    ]


def list_topics(session: Session, list_id: int) -> list[str]:
    """The topics a reader can choose on a list: those of its enabled digests."""
    topics: set[str] = set()
    for digest_topics in session.exec(
        select(Digest.topics).where(col(Digest.list_id) == list_id, col(Digest.enabled))
    ):
        topics.update(digest_topics)
    return sorted(topics)


def set_topics(
    session: Session,
    subscriber_id: int,
    list_id: int,
    chosen: set[str],
    context: ledger.ConsentContext,
    now: datetime,
) -> bool:
    """Keep only `chosen` topics of the list (none, or all of them, means everything).
    Records a preferences-changed event when something changed; returns whether it did."""
    subscriber_id = surviving_id(session, subscriber_id)
    subscriber = lock_subscriber(session, subscriber_id)
    subscription = subscriptions_by_list(session, subscriber_id).get(list_id)
    mailing_list = session.get(MailingList, list_id)
    if subscription is None or mailing_list is None:
        return False
    available = set(list_topics(session, list_id))
    wanted = sorted(chosen & available)
    if set(wanted) == available:
        wanted = []
    if wanted == sorted(subscription.topics):
        return False
    subscription.topics = wanted
    subscription.updated_at = now
    session.add(subscription)
    wording = "topics: " + (", ".join(wanted) if wanted else "all")
    ledger.append(
        session,
        subscriber,
        ConsentAction.preferences_changed,
        [mailing_list.slug],
        replace(context, consent_text=wording),
        now,
    )
    return True
