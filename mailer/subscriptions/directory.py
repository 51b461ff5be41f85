"""Finding subscribers: by address (any spelling of it), by list and status, by part of an
address."""

from __future__ import annotations

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from mailer.models import MailingList, Subscriber, Subscription
from mailer.subscriptions.addresses import address_key


def by_address(session: Session, email: str) -> Subscriber | None:
    """The subscriber with this address, however it is spelled (see address_key)."""
    return session.scalars(
        select(Subscriber).where(col(Subscriber.email_key) == address_key(email))
    ).first()


def search(
    session: Session,
    *,
    email: str | None = None,
    list_slug: str | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
    newest_first: bool = False,
) -> list[Subscriber]:
    """Subscribers with this `email` (any spelling of it), or on a list and with a status."""
    order = col(Subscriber.id).desc() if newest_first else col(Subscriber.id)
    query = select(Subscriber).order_by(order).limit(limit).offset(offset)
    if email is not None:
        query = query.where(col(Subscriber.email_key) == address_key(email))
    if list_slug or status:
        query = query.join(Subscription, col(Subscription.subscriber_id) == Subscriber.id)
        if list_slug:
            query = query.join(MailingList, col(MailingList.id) == Subscription.list_id).where(
                col(MailingList.slug) == list_slug
            )
        if status:
            query = query.where(col(Subscription.status) == status)
    return list(session.scalars(query).unique())


def containing(session: Session, fragment: str, limit: int = 50) -> list[Subscriber]:
    """Subscribers not erased whose address contains `fragment` (any case), newest first."""
    query = (
        select(Subscriber)
        .where(
            or_(
                func.lower(col(Subscriber.email)).contains(fragment.lower(), autoescape=True),
                col(Subscriber.email_key).contains(fragment.lower(), autoescape=True),
            ),
            col(Subscriber.erased_at).is_(None),
        )
        .order_by(col(Subscriber.id).desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def statuses_of(session: Session, subscriber_ids: list[int]) -> dict[int, list[tuple[str, str]]]:
    """(list slug, status) pairs of each subscriber, by subscriber id, slugs in order."""
    found: dict[int, list[tuple[str, str]]] = {
        subscriber_id: [] for subscriber_id in subscriber_ids
    }
    if not subscriber_ids:
        return found
    rows = session.execute(
        select(Subscription.subscriber_id, MailingList.slug, Subscription.status)
        .join(MailingList, col(MailingList.id) == Subscription.list_id)
        .where(col(Subscription.subscriber_id).in_(subscriber_ids))
        .order_by(col(MailingList.slug))
    )
    for subscriber_id, slug, status in rows:
        found[subscriber_id].append((slug, status))
    return found


def topics_by_list(session: Session, subscriber_id: int) -> dict[str, list[str]]:
    """The topics a subscriber chose on each list (empty: all of them), by list slug."""
    rows = session.execute(
        select(MailingList.slug, Subscription.topics)
        .join(MailingList, col(MailingList.id) == Subscription.list_id)
        .where(col(Subscription.subscriber_id) == subscriber_id)
    )
    return {slug: list(topics) for slug, topics in rows}
