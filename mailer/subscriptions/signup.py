"""Double opt-in: a signup becomes a pending confirmation, a confirm makes it count.

The answer to a signup never depends on what the address already is; what happens
underneath does:
- lists already confirmed stay confirmed (re-posting never demotes a reader);
- lists pending or unsubscribed get one confirmation mail per address per window;
- an unsubscribed list comes back only when that new confirmation is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from mailer.config import SignupSettings
from mailer.db import insert_unless_present
from mailer.errors import NotFound
from mailer.models import (
    UNDELIVERED,
    Confirmation,
    ConsentAction,
    Form,
    FormConsentVersion,
    MailingList,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    WebhookEvent,
)
from mailer.subscriptions import ledger
from mailer.subscriptions.addresses import address_key
from mailer.subscriptions.errors import Expired
from mailer.webhooks import events

PREFERENCES_WORDING = "Chose this list in the preference centre."
"""What a reader agreed to by ticking a list in the preference centre."""


@dataclass
class SignupResult:
    """What a signup did (never shown to the reader, who sees the same answer always)."""

    subscriber_id: int
    confirmation_id: int | None = None
    mail_at: datetime | None = None
    already_confirmed: list[str] = field(default_factory=list)


def get_or_create_subscriber(session: Session, email: str, name: str, now: datetime) -> Subscriber:
    """The subscriber row for `email` (any spelling of it), created if new with `email` as
    typed, locked for this transaction."""
    key = address_key(email)
    insert_unless_present(
        session,
        Subscriber,
        "email_key",
        email=email,
        email_key=key,
        name=name,
        created_at=now,
        chain_head="",
        chain_length=0,
    )
    return session.scalars(
        select(Subscriber).where(col(Subscriber.email_key) == key).with_for_update()
    ).one()


def lock_subscriber(session: Session, subscriber_id: int) -> Subscriber:
    """The subscriber row, locked for this transaction; NotFound when there is none."""
    found = session.scalars(
        select(Subscriber).where(col(Subscriber.id) == subscriber_id).with_for_update()
    ).first()
    if found is None:
        raise NotFound("subscriber")
    return found


def subscriptions_by_list(session: Session, subscriber_id: int) -> dict[int, Subscription]:
    rows = session.scalars(
        select(Subscription).where(col(Subscription.subscriber_id) == subscriber_id)
    )
    return {row.list_id: row for row in rows}


def request(
    session: Session,
    *,
    email: str,
    name: str,
    lists: list[MailingList],
    form_id: int | None,
    context: ledger.ConsentContext,
    settings: SignupSettings,
    now: datetime,
) -> SignupResult:
    """Record a signup for `lists` and queue a confirmation mail when one is due."""
    subscriber = get_or_create_subscriber(session, email, name, now)
    assert subscriber.id is not None
    current = subscriptions_by_list(session, subscriber.id)
    result = SignupResult(subscriber_id=subscriber.id)
    needing: list[MailingList] = []
    for mailing_list in lists:
        assert mailing_list.id is not None
        existing = current.get(mailing_list.id)
        if existing is not None and existing.status == SubscriptionStatus.confirmed:
            result.already_confirmed.append(mailing_list.slug)
        else:
            needing.append(mailing_list)
    if not needing:
        return result

    needing_ids = {mailing_list.id for mailing_list in needing if mailing_list.id is not None}
    window = timedelta(minutes=settings.confirmation_mail_window_minutes)
    window_end = (
        subscriber.last_confirmation_at + window if subscriber.last_confirmation_at else None
    )
    open_confirmation = session.scalars(
        select(Confirmation)
        .where(
            col(Confirmation.subscriber_id) == subscriber.id,
            col(Confirmation.used_at).is_(None),
            col(Confirmation.revoked_at).is_(None),
            col(Confirmation.expires_at) > now,
        )
        .order_by(col(Confirmation.id).desc())
    ).first()
    if (
        open_confirmation is not None
        and needing_ids <= set(open_confirmation.list_ids)
        and window_end is not None
        and now < window_end
    ):
        return result  # already asked, recently: no new mail, no new event

    for mailing_list in needing:
        assert mailing_list.id is not None
        if mailing_list.id not in current:
            session.add(
                Subscription(
                    subscriber_id=subscriber.id,
                    list_id=mailing_list.id,
                    status=SubscriptionStatus.pending,
                    created_at=now,
                    updated_at=now,
                )
            )
    mail_at = max(now, window_end) if window_end else now
    confirmation = Confirmation(
        subscriber_id=subscriber.id,
        list_ids=sorted(needing_ids),
        form_id=form_id,
        consent_version=context.consent_version,
        created_at=now,
        expires_at=mail_at + timedelta(hours=settings.confirm_token_ttl_hours),
    )
    session.add(confirmation)
    session.flush()
    # A confirmation mail not yet sent is replaced by this one, which covers its lists too.
    supersede_queued_mail(session, subscriber.id, OutboxKind.confirmation)
    session.add(
        OutboxMessage(
            kind=OutboxKind.confirmation,
            subscriber_id=subscriber.id,
            confirmation_id=confirmation.id,
            next_attempt_at=mail_at,
            created_at=now,
        )
    )
    subscriber.last_confirmation_at = mail_at
    ledger.append(
        session,
        subscriber,
        ConsentAction.requested,
        [mailing_list.slug for mailing_list in needing],
        context,
        now,
    )
    requested = [mailing_list.slug for mailing_list in needing]
    data = events.subscriber_data(subscriber, requested, now, status=SubscriptionStatus.pending)
    events.emit(session, WebhookEvent.subscriber_created, data, now)
    result.confirmation_id = confirmation.id
    result.mail_at = mail_at
    return result


def supersede_queued_mail(session: Session, subscriber_id: int, kind: OutboxKind | None) -> None:
    """Side effect: unsent mail to this subscriber (of `kind`, or any) is dropped, in flight
    too: if that attempt fails it is not retried (if it succeeds it is recorded as sent)."""
    conditions = [
        col(OutboxMessage.subscriber_id) == subscriber_id,
        col(OutboxMessage.status).in_(UNDELIVERED),
    ]
    if kind is not None:
        conditions.append(col(OutboxMessage.kind) == kind)
    session.execute(update(OutboxMessage).where(*conditions).values(status=OutboxStatus.superseded))


def revoke_open_confirmations(session: Session, subscriber_id: int, now: datetime) -> None:
    """Side effect: unused confirm links stop working and their unsent mail is dropped."""
    session.execute(
        update(Confirmation)
        .where(
            col(Confirmation.subscriber_id) == subscriber_id,
            col(Confirmation.used_at).is_(None),
            col(Confirmation.revoked_at).is_(None),
        )
        .values(revoked_at=now)
    )
    supersede_queued_mail(session, subscriber_id, OutboxKind.confirmation)


@dataclass
class ConfirmResult:
    subscriber_id: int
    list_names: list[str]
    newly_confirmed: list[str]
    already_used: bool


def confirm(
    session: Session, confirmation_id: int, context: ledger.ConsentContext, now: datetime
) -> ConfirmResult:
    """Use a confirmation: its lists become confirmed. Using it again changes nothing."""
    confirmation = session.get(Confirmation, confirmation_id)
    if confirmation is None:
        raise NotFound("confirmation")
    subscriber = lock_subscriber(session, confirmation.subscriber_id)
    session.refresh(confirmation)
    lists = list(
        session.scalars(
            select(MailingList)
            .where(col(MailingList.id).in_(confirmation.list_ids))
            .order_by(col(MailingList.slug))
        )
    )
    names = [mailing_list.name for mailing_list in lists]
    if confirmation.used_at is not None:
        return ConfirmResult(subscriber.id or 0, names, [], already_used=True)
    if confirmation.revoked_at is not None or confirmation.expires_at <= now:
        raise Expired("confirmation")

    context = _with_wording_of(session, confirmation, context)
    current = subscriptions_by_list(session, confirmation.subscriber_id)
    confirmed: list[str] = []
    resubscribed: list[str] = []
    for mailing_list in lists:
        assert mailing_list.id is not None
        subscription = current.get(mailing_list.id)
        if subscription is None:  # purged meanwhile: the reader's click still counts
            subscription = Subscription(
                subscriber_id=confirmation.subscriber_id,
                list_id=mailing_list.id,
                created_at=now,
                updated_at=now,
            )
        elif subscription.status == SubscriptionStatus.confirmed:
            continue
        target = (
            resubscribed if subscription.status == SubscriptionStatus.unsubscribed else confirmed
        )
        target.append(mailing_list.slug)
        subscription.status = SubscriptionStatus.confirmed
        subscription.confirmed_at = now
        subscription.updated_at = now
        session.add(subscription)
    confirmation.used_at = now
    session.add(confirmation)
    if confirmed:
        ledger.append(session, subscriber, ConsentAction.confirmed, confirmed, context, now)
        _queue_welcome(
            session, subscriber.id or 0, [item for item in lists if item.slug in confirmed], now
        )
    if resubscribed:
        ledger.append(session, subscriber, ConsentAction.resubscribed, resubscribed, context, now)
    if confirmed or resubscribed:
        data = events.subscriber_data(subscriber, confirmed + resubscribed, now)
        events.emit(session, WebhookEvent.subscriber_confirmed, data, now)
    return ConfirmResult(subscriber.id or 0, names, confirmed + resubscribed, already_used=False)


def _with_wording_of(
    session: Session, confirmation: Confirmation, context: ledger.ConsentContext
) -> ledger.ConsentContext:
    """The confirming request's context, carrying the wording the reader agreed to."""
    if confirmation.form_id is None:  # asked for in the preference centre
        return replace(context, form="preferences", consent_text=PREFERENCES_WORDING)
    form = session.get(Form, confirmation.form_id)
    wording = session.get(FormConsentVersion, (confirmation.form_id, confirmation.consent_version))
    return replace(
        context,
        form=form.slug if form else "",
        consent_text=wording.consent_text if wording else "",
        consent_version=confirmation.consent_version,
    )


def _queue_welcome(
    session: Session, subscriber_id: int, lists: list[MailingList], now: datetime
) -> None:
    """Side effect: a welcome mail is queued for each newly joined list that has one."""
    for mailing_list in lists:
        if mailing_list.welcome_enabled:
            session.add(
                OutboxMessage(
                    kind=OutboxKind.welcome,
                    subscriber_id=subscriber_id,
                    list_id=mailing_list.id,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
