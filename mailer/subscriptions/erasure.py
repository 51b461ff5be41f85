"""Erasure (right to be forgotten) and the purge of signups never confirmed.

Erasure keeps every consent event and the subscriber row, replacing the address, the
name and each event's personal fields by digests, so the ledger stays verifiable.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, exists, update
from sqlmodel import Session, col, select

from mailer.models import (
    Confirmation,
    ConsentAction,
    DeliveryAttempt,
    MailingList,
    OutboxMessage,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
from mailer.subscriptions import directory, ledger
from mailer.subscriptions.addresses import address_digest
from mailer.subscriptions.signup import (
    lock_subscriber,
    revoke_open_confirmations,
    supersede_queued_mail,
)
from mailer.webhooks import retention

ERASED_DOMAIN = "erased.invalid"


def erase(session: Session, subscriber_id: int, now: datetime, reason: str = "") -> None:
    """Forget a subscriber's personal data; leaves them on no list and with no mail queued."""
    subscriber = lock_subscriber(session, subscriber_id)
    if subscriber.erased_at is not None:
        return
    session.execute(
        update(Subscription)
        .where(col(Subscription.subscriber_id) == subscriber_id)
        .values(status=SubscriptionStatus.unsubscribed, updated_at=now)
    )
    revoke_open_confirmations(session, subscriber_id, now)
    supersede_queued_mail(session, subscriber_id, kind=None)
    # Relays quote the recipient in their replies ("550 <reader@...>: unknown").
    session.execute(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.subscriber_id) == subscriber_id, col(OutboxMessage.last_reply) != ""
        )
        .values(last_reply="(erased)")
    )
    rows = select(OutboxMessage.id).where(col(OutboxMessage.subscriber_id) == subscriber_id)
    session.execute(
        update(DeliveryAttempt)
        .where(col(DeliveryAttempt.outbox_id).in_(rows))
        .values(reply="(erased)")
    )
    # The suppression stays (keyed by the address's digest), without the quoting reply.
    session.execute(
        update(Suppression)
        .where(col(Suppression.subscriber_id) == subscriber_id)
        .values(detail="(erased)")
    )
    ledger.erase_personal_fields(session, subscriber_id)
    erased_email = f"{address_digest(subscriber.email)}@{ERASED_DOMAIN}"
    # Webhook payloads (sent or still to send) named the reader.
    retention.forget_address(session, subscriber.email, erased_email)
    subscriber.email = erased_email
    subscriber.email_key = erased_email
    subscriber.name = ""
    subscriber.erased_at = now
    ledger.append(
        session,
        subscriber,
        ConsentAction.erased,
        [],
        ledger.ConsentContext(consent_text=reason),
        now,
    )


def purge_unconfirmed(session: Session, older_than: timedelta, now: datetime) -> int:
    """Drop pending subscriptions with no usable confirm link that are older than
    `older_than`; erase subscribers left with nothing. Returns how many were dropped."""
    cutoff = now - older_than
    open_link = exists().where(
        col(Confirmation.subscriber_id) == Subscription.subscriber_id,
        col(Confirmation.used_at).is_(None),
        col(Confirmation.revoked_at).is_(None),
        col(Confirmation.expires_at) > now,
    )
    stale = list(
        session.execute(
            select(Subscription.id, Subscription.subscriber_id, MailingList.slug)
            .join(MailingList, col(MailingList.id) == Subscription.list_id)
            .where(
                col(Subscription.status) == SubscriptionStatus.pending,
                col(Subscription.created_at) < cutoff,
                ~open_link,
            )
        )
    )
    by_subscriber: dict[int, list[tuple[int, str]]] = {}
    for subscription_id, subscriber_id, slug in stale:
        by_subscriber.setdefault(subscriber_id, []).append((subscription_id, slug))
    for subscriber_id, rows in by_subscriber.items():
        subscriber = lock_subscriber(session, subscriber_id)
        session.execute(
            delete(Subscription).where(col(Subscription.id).in_([row_id for row_id, _ in rows]))
        )
        ledger.append(
            session,
            subscriber,
            ConsentAction.expired,
            [slug for _, slug in rows],
            ledger.ConsentContext(consent_text="never confirmed"),
            now,
        )
        session.flush()
        has_any = session.scalars(
            select(Subscription.id).where(col(Subscription.subscriber_id) == subscriber_id)
        ).first()
        if has_any is None:
            erase(session, subscriber_id, now, reason="unconfirmed signup purged")
    return len(stale)


def find_by_email(session: Session, email: str) -> Subscriber | None:
    return directory.by_address(session, email)
