"""One subscriber's data as a single document: everything held about them (GDPR access).

The editors' API, the admin page's download and `mailer subscribers show` all answer
with `held_data`, so the three never disagree about what is held.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlmodel import Session, col, or_, select

from mailer.models import (
    BounceEvent,
    Confirmation,
    DeliveryAttempt,
    Form,
    MailingList,
    OutboxMessage,
    Send,
    Subscriber,
    Subscription,
    Suppression,
)
from mailer.schemas import ConsentEventPublic
from mailer.subscriptions import ledger
from mailer.subscriptions.addresses import address_digest


class SubscriptionHeld(BaseModel):
    slug: str
    name: str
    status: str
    topics: list[str]
    """The topics chosen in the preference centre; empty means all."""
    subscribed_at: datetime
    updated_at: datetime
    confirmed_at: datetime | None


class ConsentEventHeld(ConsentEventPublic):
    """A consent event as the API shows it, with the hash it chains from."""

    prev_hash: str


class ChainHeld(BaseModel):
    valid: bool
    events: int
    first_bad_seq: int | None
    reason: str


class ConfirmationHeld(BaseModel):
    """A confirm link sent to the reader (the token itself is never stored)."""

    id: int
    lists: list[str]
    form: str
    consent_version: int | None
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None


class DeliveryAttemptHeld(BaseModel):
    attempt: int
    at: datetime
    outcome: str
    reply: str


class MessageHeld(BaseModel):
    """A message sent or queued to the reader (an outbox row)."""

    id: int
    kind: str
    send_id: int | None
    list_slug: str | None
    """The list a digest or welcome mail was for."""
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    last_reply: str
    delivery_attempts: list[DeliveryAttemptHeld]
    """Attempts that did not succeed, with the relay's reply."""


class BounceHeld(BaseModel):
    at: datetime
    kind: str
    status: str
    action: str
    source: str
    outbox_id: int | None
    detail: str


class SuppressionHeld(BaseModel):
    reason: str
    detail: str
    at: datetime


class SubscriberHeld(BaseModel):
    """Everything held about one subscriber."""

    id: int
    email: str
    name: str
    created_at: datetime
    erased: bool
    erased_at: datetime | None
    lists: list[SubscriptionHeld]
    consent_events: list[ConsentEventHeld]
    consent_chain: ChainHeld
    confirmations: list[ConfirmationHeld]
    messages: list[MessageHeld]
    bounce_events: list[BounceHeld]
    suppression: SuppressionHeld | None


def held_data(session: Session, subscriber: Subscriber) -> SubscriberHeld:
    """Read everything held about `subscriber` (no side effects)."""
    assert subscriber.id is not None
    slugs = {item.id: item.slug for item in session.exec(select(MailingList))}
    report = ledger.verify(session, subscriber)
    return SubscriberHeld(
        id=subscriber.id,
        email=subscriber.email,
        name=subscriber.name,
        created_at=subscriber.created_at,
        erased=subscriber.erased_at is not None,
        erased_at=subscriber.erased_at,
        lists=_subscriptions(session, subscriber.id),
        consent_events=[
            ConsentEventHeld.model_validate(event, from_attributes=True)
            for event in ledger.events_of(session, subscriber.id)
        ],
        consent_chain=ChainHeld(
            valid=report.valid,
            events=report.events,
            first_bad_seq=report.first_bad_seq,
            reason=report.reason,
        ),
        confirmations=_confirmations(session, subscriber.id, slugs),
        messages=_messages(session, subscriber.id, slugs),
        bounce_events=[
            BounceHeld.model_validate(event, from_attributes=True)
            for event in session.exec(
                select(BounceEvent)
                .where(col(BounceEvent.subscriber_id) == subscriber.id)
                .order_by(col(BounceEvent.id))
            )
        ],
        suppression=_suppression(session, subscriber),
    )


def _subscriptions(session: Session, subscriber_id: int) -> list[SubscriptionHeld]:
    rows = session.exec(
        select(Subscription, MailingList)
        .join(MailingList, col(MailingList.id) == Subscription.list_id)
        .where(col(Subscription.subscriber_id) == subscriber_id)
        .order_by(col(MailingList.slug))
    )
    return [
        SubscriptionHeld(
            slug=item.slug,
            name=item.name,
            status=sub.status,
            topics=list(sub.topics),
            subscribed_at=sub.created_at,
            updated_at=sub.updated_at,
            confirmed_at=sub.confirmed_at,
        )
        for sub, item in rows
    ]


def _confirmations(
    session: Session, subscriber_id: int, slugs: dict[int | None, str]
) -> list[ConfirmationHeld]:
    form_slugs = {item.id: item.slug for item in session.exec(select(Form))}
    rows = session.exec(
        select(Confirmation)
        .where(col(Confirmation.subscriber_id) == subscriber_id)
        .order_by(col(Confirmation.id))
    )
    return [
        ConfirmationHeld(
            id=row.id or 0,
            lists=sorted(slugs.get(list_id, str(list_id)) for list_id in row.list_ids),
            form=form_slugs.get(row.form_id, "") if row.form_id is not None else "",
            consent_version=row.consent_version,
            created_at=row.created_at,
            expires_at=row.expires_at,
            used_at=row.used_at,
            revoked_at=row.revoked_at,
        )
        for row in rows
    ]


def _messages(
    session: Session, subscriber_id: int, slugs: dict[int | None, str]
) -> list[MessageHeld]:
    rows = list(
        session.exec(
            select(OutboxMessage)
            .where(col(OutboxMessage.subscriber_id) == subscriber_id)
            .order_by(col(OutboxMessage.id))
        )
    )
    attempts: dict[int, list[DeliveryAttemptHeld]] = {}
    row_ids = [row.id for row in rows if row.id is not None]
    if row_ids:
        for attempt in session.exec(
            select(DeliveryAttempt)
            .where(col(DeliveryAttempt.outbox_id).in_(row_ids))
            .order_by(col(DeliveryAttempt.id))
        ):
            attempts.setdefault(attempt.outbox_id, []).append(
                DeliveryAttemptHeld.model_validate(attempt, from_attributes=True)
            )
    send_ids = {row.send_id for row in rows if row.send_id is not None}
    list_of_send: dict[int | None, int] = {}
    if send_ids:
        list_of_send = dict(
            session.exec(select(Send.id, Send.list_id).where(col(Send.id).in_(send_ids))).all()
        )
    return [
        MessageHeld(
            id=row.id or 0,
            kind=row.kind,
            send_id=row.send_id,
            list_slug=slugs.get(row.list_id or list_of_send.get(row.send_id)),
            status=row.status,
            attempts=row.attempts,
            created_at=row.created_at,
            next_attempt_at=row.next_attempt_at,
            sent_at=row.sent_at,
            last_reply=row.last_reply,
            delivery_attempts=attempts.get(row.id or 0, []),
        )
        for row in rows
    ]


def _suppression(session: Session, subscriber: Subscriber) -> SuppressionHeld | None:
    """The entry for the address, or (once erased, the address being gone) for the row."""
    entry = session.exec(
        select(Suppression)
        .where(
            or_(
                col(Suppression.address_hash) == address_digest(subscriber.email),
                col(Suppression.subscriber_id) == subscriber.id,
            )
        )
        .order_by(col(Suppression.id))
    ).first()
    if entry is None:
        return None
    return SuppressionHeld(reason=entry.reason, detail=entry.detail, at=entry.created_at)
