"""Sends: start one (select, render once, queue every recipient in one statement), report
its progress, and close it when its outbox is empty."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, cast, func, insert, literal, text, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from mailer.config import Settings
from mailer.content.selection import select_articles
from mailer.delivery import message
from mailer.delivery.dkim import DkimSigner
from mailer.delivery.render import RECIPIENT, MailRenderer, RenderedMail, TemplateProblem, fill
from mailer.delivery.template_values import (
    ArticleValues,
    DigestValues,
    ListValues,
    articles_values,
    digest_values,
    list_values,
)
from mailer.delivery.transport import DeliveryError, make_transport
from mailer.errors import Conflict, NotFound
from mailer.models import (
    UNDELIVERED,
    Article,
    DeliveryAttempt,
    Digest,
    DigestArticle,
    MailingList,
    OutboxKind,
    OutboxMessage,
    OutboxStatus,
    Send,
    SendStatus,
    SendVariant,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
    WebhookEvent,
)
from mailer.webhooks import events

ANALYZE_AFTER = 10_000
"""Sends to at least this many readers refresh PostgreSQL's statistics of the outbox."""


NO_ARTICLES = "no new articles since the previous send"


class AlreadyStarted(Conflict):
    """Another request or process started this digest's run already (a 409 wherever it
    reaches the API)."""


class NothingNew(Conflict):
    """No article is new since the digest's previous send: there is nothing to show."""


@dataclass(frozen=True)
class Edition:
    """What one rendering of a digest is made from, read from the database before anything
    renders: the digest's templates and the plain values they see."""

    templates: dict[str, str]
    digest: DigestValues
    mailing_list: ListValues
    articles: tuple[ArticleValues, ...]

    @classmethod
    def of(cls, digest: Digest, mailing_list: MailingList, articles: list[Article]) -> Edition:
        return cls(
            templates={
                "subject": digest.subject_template,
                "html": digest.html_template,
                "text": digest.text_template,
            },
            digest=digest_values(digest),
            mailing_list=list_values(mailing_list),
            articles=articles_values(articles),
        )


def render_digest(settings: Settings, renderer: MailRenderer, edition: Edition) -> RenderedMail:
    """The digest's mail with per-recipient markers left in; its templates see plain
    copies of the rows (template_values), never the rows themselves. Call it outside any
    transaction: an editor's template may take up to its time limit."""
    return renderer.render(
        "digest",
        overrides=edition.templates,
        digest=edition.digest,
        list=edition.mailing_list,
        articles=edition.articles,
        recipient=RECIPIENT,
        site_name=settings.mail.site_name,
        postal_address=settings.mail.postal_address,
        public_url=settings.public_url,
    )


def preview(
    session: Session, settings: Settings, renderer: MailRenderer, digest: Digest, now: datetime
) -> tuple[RenderedMail, list[Article]]:
    """The digest as it would go out now, filled for a sample reader, and its articles.

    `digest` may be a draft that is not saved: nothing is written. The session's
    transaction is rolled back once the values are read, so the templates render outside
    any transaction. TemplateProblem when they do not render (or not within their
    limits), NothingNew without articles."""
    mailing_list = session.get(MailingList, digest.list_id)
    if mailing_list is None:
        raise NotFound("list")
    start, end = window_for(settings, digest, now)
    articles = select_articles(session, digest, start, end)
    if not articles:
        raise NothingNew(NO_ARTICLES)
    edition = Edition.of(digest, mailing_list, articles)
    for article in articles:
        session.expunge(article)  # kept as read for the caller, past the rollback
    session.rollback()
    mail = render_digest(settings, renderer, edition)
    sample = {
        "unsubscribe_url": f"{settings.public_url}/unsubscribe/preview",
        "name": "",
        "email": "reader@example.com",
    }
    filled = RenderedMail(
        subject=fill(mail.subject, sample),
        html=fill(mail.html, sample),
        text=fill(mail.text, sample),
    )
    return filled, articles


async def send_test(
    settings: Settings,
    msgid_domain: str,
    mail: RenderedMail,
    addresses: list[str],
    now: datetime,
    dkim_signer: DkimSigner | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Send `mail` marked [TEST] to `addresses` only, outside the outbox (DKIM-signed like
    the real thing); returns the addresses sent to and the relay's reply for each that failed."""
    transport = make_transport(settings.smtp, settings.maildir_path)
    marked = RenderedMail(subject=f"[TEST] {mail.subject}", html=mail.html, text=mail.text)
    sent: list[str] = []
    failed: dict[str, str] = {}
    try:
        for address in addresses:
            data = message.build(
                from_name=settings.mail.from_name,
                from_address=settings.mail.from_address,
                to_address=address,
                mail=marked,
                now=now,
                msgid_domain=msgid_domain,
            )
            if dkim_signer is not None:
                data = dkim_signer.sign(data)
            try:
                await transport.send(settings.mail.from_address, address, data)
                sent.append(address)
            except DeliveryError as exc:
                failed[address] = exc.reply
    finally:
        await transport.close()
    return sent, failed


def window_for(settings: Settings, digest: Digest, now: datetime) -> tuple[datetime, datetime]:
    """From the end of the previous send (or the first look-back) to now."""
    start = digest.last_sent_at or now - timedelta(hours=settings.digests.first_lookback_hours)
    return start, now


def start_send(
    session: Session,
    settings: Settings,
    renderer: MailRenderer,
    digest: Digest,
    scheduled_for: datetime,
    now: datetime,
) -> Send:
    """Create the send for `digest`'s run at `scheduled_for` and queue its recipients.

    The articles and the readers' topic choices are read first, and the session's
    transaction committed: the templates then render outside any transaction (each
    rendering within its limits), and the send is written in a new one.

    Side effects: a `sends` row (unique per digest and run: AlreadyStarted when another
    process has it), one outbox row per confirmed subscriber, the articles recorded as
    carried, and the digest's window moved on. With nothing new, or a template that does
    not render, the send is `skipped` with the reason.
    """
    assert digest.id is not None
    mailing_list = session.get(MailingList, digest.list_id)
    if mailing_list is None:
        raise NotFound("list")
    window_start, window_end = window_for(settings, digest, now)
    read_last_sent_at = digest.last_sent_at
    articles = select_articles(session, digest, window_start, window_end)
    # Readers who chose some topics get their own rendering: once per distinct choice.
    choices: list[tuple[str, list[Article] | None]] = []
    for choice in _topic_choices(session, digest.list_id) if articles else []:
        topics = json.loads(choice)
        if not topics:
            choices.append((choice, None))
            continue
        wanted = sorted(set(topics) & set(digest.topics)) if digest.topics else topics
        chosen = (
            select_articles(session, digest, window_start, window_end, wanted) if wanted else []
        )
        if chosen:  # nothing on their topics this time: they get no mail
            choices.append((choice, chosen))
    main = Edition.of(digest, mailing_list, articles)
    variants = {
        choice: Edition.of(digest, mailing_list, chosen) for choice, chosen in choices if chosen
    }
    session.commit()

    refused = ""
    rendered: dict[str | None, RenderedMail] = {}
    try:
        if articles:
            rendered[None] = render_digest(settings, renderer, main)
        for choice, edition in variants.items():
            rendered[choice] = render_digest(settings, renderer, edition)
    except TemplateProblem as exc:
        refused = exc.message

    session.refresh(digest, with_for_update=True)
    if digest.last_sent_at != read_last_sent_at:
        raise AlreadyStarted("another send of this digest started meanwhile")
    send = Send(
        digest_id=digest.id,
        list_id=digest.list_id,
        scheduled_for=scheduled_for,
        window_start=window_start,
        window_end=window_end,
        created_at=now,
    )
    try:
        with session.begin_nested():
            session.add(send)
            session.flush()
    except IntegrityError as exc:
        raise AlreadyStarted(
            f"a send of this digest for {scheduled_for:%Y-%m-%d %H:%M:%S} UTC has already started"
        ) from exc
    assert send.id is not None
    if not articles:
        return _skip(session, send, NO_ARTICLES, now)
    if refused:
        return _skip(session, send, refused, now)
    mail = rendered[None]
    send.subject, send.html, send.text = mail.subject, mail.html, mail.text
    send.article_ids = [article.id for article in articles if article.id is not None]
    carried = set(send.article_ids)

    for choice, picked in choices:
        if picked is None:
            _queue(session, send, choice, None, now)
            continue
        variant_mail = rendered[choice]
        variant = SendVariant(
            send_id=send.id,
            topics=json.loads(choice),
            subject=variant_mail.subject,
            html=variant_mail.html,
            text=variant_mail.text,
            article_ids=[a.id for a in picked if a.id is not None],
        )
        session.add(variant)
        session.flush()
        carried.update(variant.article_ids)
        _queue(session, send, choice, variant.id, now)

    send.total = _count(session, send.id)
    if send.total >= ANALYZE_AFTER and session.get_bind().dialect.name == "postgresql":
        # The planner's picture of the outbox is now far off (autovacuum catches up only
        # later): without it, claiming a batch would sort every queued row.
        session.execute(text("ANALYZE outbox"))
    for article_id in sorted(carried):
        session.add(DigestArticle(digest_id=digest.id, article_id=article_id, send_id=send.id))
    digest.last_sent_at = window_end
    send.status = SendStatus.queued if send.total else SendStatus.done
    if not send.total:
        send.reason = "the list has no confirmed subscribers"
        send.finished_at = now
    session.add(digest)
    session.add(send)
    session.flush()
    _emit(session, WebhookEvent.send_started, send, now)
    if send.status == SendStatus.done:
        _emit(session, WebhookEvent.send_finished, send, now)
    return send


def _emit(session: Session, event: WebhookEvent, send: Send, now: datetime) -> None:
    """Side effect: `event` queued for the webhooks, with the send's counts as they stand."""
    assert send.id is not None
    mailing_list = session.get(MailingList, send.list_id)
    counts = progress(session, send.id)[1]
    data = {
        "send_id": send.id,
        "digest_id": send.digest_id,
        "list": mailing_list.slug if mailing_list else None,
        "status": send.status,
        "total": counts.total,
        "sent": counts.sent,
        "failed": counts.failed,
        "pending": counts.pending,
        "dropped": counts.dropped,
        "at": events.iso(now),
    }
    events.emit(session, event, data, now)


def _recipients(list_id: int) -> list[ColumnElement[bool]]:
    suppressed = sa_select(col(Suppression.id)).where(
        col(Suppression.subscriber_id) == Subscription.subscriber_id
    )
    return [
        col(Subscription.list_id) == list_id,
        col(Subscription.status) == SubscriptionStatus.confirmed,
        col(Subscriber.erased_at).is_(None),
        ~suppressed.exists(),
    ]


def _topic_choices(session: Session, list_id: int) -> list[str]:
    """The distinct topic choices (as stored JSON text) among the list's readers."""
    choice = cast(col(Subscription.topics), String)
    statement = (
        sa_select(choice)
        .distinct()
        .join(Subscriber, col(Subscriber.id) == Subscription.subscriber_id)
        .where(*_recipients(list_id))
    )
    return sorted(session.scalars(statement))


def _queue(
    session: Session, send: Send, choice: str, variant_id: int | None, now: datetime
) -> None:
    """Side effect: one outbox row per confirmed reader of the list with this topic choice,
    in one INSERT ... SELECT."""
    rows = (
        sa_select(
            literal(OutboxKind.digest.value),
            col(Subscription.subscriber_id),
            literal(send.id),
            literal(variant_id),
            literal(OutboxStatus.queued.value),
            literal(0),
            literal(now),
            literal(""),
            literal(now),
        )
        .join(Subscriber, col(Subscriber.id) == Subscription.subscriber_id)
        .where(*_recipients(send.list_id), cast(col(Subscription.topics), String) == choice)
    )
    columns = [
        "kind",
        "subscriber_id",
        "send_id",
        "variant_id",
        "status",
        "attempts",
        "next_attempt_at",
        "last_reply",
        "created_at",
    ]
    session.execute(insert(OutboxMessage).from_select(columns, rows))


def _count(session: Session, send_id: int) -> int:
    statement = (
        select(func.count()).select_from(OutboxMessage).where(col(OutboxMessage.send_id) == send_id)
    )
    return int(session.exec(statement).one())


def _skip(session: Session, send: Send, reason: str, now: datetime) -> Send:
    send.status = SendStatus.skipped
    send.reason = reason
    send.finished_at = now
    session.add(send)
    session.flush()
    return send


@dataclass
class Progress:
    status: str
    total: int
    sent: int
    failed: int
    pending: int
    dropped: int
    """Recipients who left (or were erased) before their message went out."""


def progress(session: Session, send_id: int) -> tuple[Send, Progress]:
    send = session.get(Send, send_id)
    if send is None:
        raise NotFound("send")
    counts: dict[str, int] = {
        status: count
        for status, count in session.exec(
            select(OutboxMessage.status, func.count())
            .where(col(OutboxMessage.send_id) == send_id)
            .group_by(col(OutboxMessage.status))
        )
    }
    return send, _progress(send, counts)


def _progress(send: Send, counts: dict[str, int]) -> Progress:
    return Progress(
        status=send.status,
        total=send.total,
        sent=counts.get(OutboxStatus.sent, 0),
        failed=counts.get(OutboxStatus.failed, 0),
        pending=sum(counts.get(status, 0) for status in UNDELIVERED),
        dropped=counts.get(OutboxStatus.superseded, 0),
    )


def messages(
    session: Session, send_id: int, status: str | None, after: int, limit: int
) -> list[dict[str, Any]]:
    """A page of the send's outbox rows with their attempts: failed ones from
    `delivery_attempts`, then the successful one (the row itself)."""
    statement = (
        select(OutboxMessage, Subscriber.email)
        .join(Subscriber, col(Subscriber.id) == OutboxMessage.subscriber_id)
        .where(col(OutboxMessage.send_id) == send_id, col(OutboxMessage.id) > after)
        .order_by(col(OutboxMessage.id))
        .limit(limit)
    )
    if status:
        statement = statement.where(col(OutboxMessage.status) == status)
    rows = list(session.exec(statement))
    history: dict[int, list[dict[str, Any]]] = {row.id or 0: [] for row, _ in rows}
    for attempt in session.exec(
        select(DeliveryAttempt)
        .where(col(DeliveryAttempt.outbox_id).in_(list(history)))
        .order_by(col(DeliveryAttempt.id))
    ):
        history[attempt.outbox_id].append(attempt.model_dump())
    result = []
    for row, email in rows:
        attempts = history[row.id or 0]
        if row.status == OutboxStatus.sent and row.sent_at is not None:
            attempts.append(
                {
                    "attempt": row.attempts,
                    "at": row.sent_at,
                    "outcome": "sent",
                    "reply": row.last_reply,
                }
            )
        result.append(
            {
                "id": row.id,
                "subscriber_id": row.subscriber_id,
                "email": email,
                "status": row.status,
                "attempts": attempts,
                "last_reply": row.last_reply,
                "sent_at": row.sent_at,
            }
        )
    return result


def close_finished(session: Session, send_ids: set[int], now: datetime) -> None:
    """Side effect: sends among `send_ids` with nothing left to deliver become `done`.

    The send's row is locked first: two senders recording the last rows of one send at
    the same time then count one after the other, and the second sees the first's rows."""
    for send_id in sorted(send_ids):
        session.execute(select(Send.id).where(col(Send.id) == send_id).with_for_update())
        left = session.exec(
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                col(OutboxMessage.send_id) == send_id,
                col(OutboxMessage.status).in_(UNDELIVERED),
            )
        ).one()
        if not left:
            closed = session.execute(
                update(Send)
                .where(
                    col(Send.id) == send_id,
                    col(Send.status).in_([SendStatus.queued, SendStatus.sending]),
                )
                .values(status=SendStatus.done, finished_at=now)
            )
            send = session.get(Send, send_id)
            if closed.rowcount and send is not None:  # type: ignore[attr-defined]
                session.refresh(send)
                _emit(session, WebhookEvent.send_finished, send, now)


def mark_sending(session: Session, send_ids: set[int], now: datetime) -> None:
    """Side effect: queued sends among `send_ids` become `sending`."""
    if send_ids:
        session.execute(
            update(Send)
            .where(col(Send.id).in_(send_ids), col(Send.status) == SendStatus.queued)
            .values(status=SendStatus.sending, started_at=now)
        )


FINISHED = frozenset({SendStatus.done, SendStatus.cancelled, SendStatus.skipped})
"""A send in one of these states has ended: nothing about it changes any more."""


def rate(send: Send, counts: Progress, now: datetime) -> float | None:
    """Messages handled (sent or failed) per second since the send started, until it
    finished; None before it started."""
    if send.started_at is None:
        return None
    seconds = ((send.finished_at or now) - send.started_at).total_seconds()
    return (counts.sent + counts.failed) / seconds if seconds > 0 else None


def eta_seconds(counts: Progress, per_second: float | None) -> float | None:
    """Seconds until the pending messages are out at `per_second`; None when unknown."""
    if not counts.pending:
        return 0.0
    return counts.pending / per_second if per_second else None


def recent(session: Session, offset: int, limit: int) -> list[tuple[Send, Progress, str]]:
    """A page of sends, newest first, each with its counts and its digest's name."""
    rows = list(
        session.exec(
            select(Send, Digest.name)
            .join(Digest, col(Digest.id) == Send.digest_id, isouter=True)
            .order_by(col(Send.id).desc())
            .offset(offset)
            .limit(limit)
        )
    )
    counted: dict[int, dict[str, int]] = {send.id or 0: {} for send, _ in rows}
    for send_id, status, count in session.exec(
        select(OutboxMessage.send_id, OutboxMessage.status, func.count())
        .where(col(OutboxMessage.send_id).in_(list(counted)))
        .group_by(col(OutboxMessage.send_id), col(OutboxMessage.status))
    ):
        counted[send_id or 0][status] = count
    return [(send, _progress(send, counted[send.id or 0]), name or "") for send, name in rows]


def public_fields(send: Send, counts: Progress, now: datetime | None = None) -> dict[str, Any]:
    """The send as the API shows it; with `now`, also its rate and ETA."""
    per_second = rate(send, counts, now) if now is not None else None
    return {
        "rate": per_second,
        "eta_seconds": eta_seconds(counts, per_second) if now is not None else None,
        "id": send.id,
        "digest_id": send.digest_id,
        "status": counts.status,
        "reason": send.reason,
        "total": counts.total,
        "sent": counts.sent,
        "failed": counts.failed,
        "pending": counts.pending,
        "dropped": counts.dropped,
        "subject": send.subject,
        "article_ids": send.article_ids,
        "created_at": send.created_at,
        "started_at": send.started_at,
        "finished_at": send.finished_at,
    }


class WrongState(Conflict):
    """The send is not in a state that allows this change."""


def change(session: Session, send_id: int, to: str, now: datetime) -> Send:
    """Pause, resume or cancel (`to`) the send; WrongState when its state forbids it."""
    if to == "pause":
        return pause(session, send_id)
    if to == "resume":
        return resume(session, send_id)
    if to == "cancel":
        return cancel(session, send_id, now)
    raise ValueError(f"unknown change {to!r}")


def pause(session: Session, send_id: int) -> Send:
    """Stop handing out this send's messages; those in flight still finish. Its queued rows
    are held, so claims do not have to step over them."""
    send = _change(session, send_id, {SendStatus.queued, SendStatus.sending}, SendStatus.paused)
    _move(session, send_id, OutboxStatus.queued, OutboxStatus.held)
    return send


def resume(session: Session, send_id: int) -> Send:
    send = _change(session, send_id, {SendStatus.paused}, SendStatus.queued)
    _move(session, send_id, OutboxStatus.held, OutboxStatus.queued)
    return send


def _move(session: Session, send_id: int, from_status: str, to_status: str) -> None:
    session.execute(
        update(OutboxMessage)
        .where(col(OutboxMessage.send_id) == send_id, col(OutboxMessage.status) == from_status)
        .values(status=to_status)
    )


def cancel(session: Session, send_id: int, now: datetime) -> Send:
    """End the send: messages not yet sent are dropped (counted as `dropped`); one in
    flight that gets through is still recorded as sent."""
    send = _change(
        session,
        send_id,
        {SendStatus.queued, SendStatus.sending, SendStatus.paused},
        SendStatus.cancelled,
    )
    send.finished_at = now
    session.execute(
        update(OutboxMessage)
        .where(
            col(OutboxMessage.send_id) == send_id,
            col(OutboxMessage.status).in_(UNDELIVERED),
        )
        .values(status=OutboxStatus.superseded, last_reply="send cancelled")
    )
    session.flush()
    _emit(session, WebhookEvent.send_finished, send, now)
    return send


def _change(session: Session, send_id: int, allowed: set[SendStatus], to: SendStatus) -> Send:
    send = session.exec(select(Send).where(col(Send.id) == send_id).with_for_update()).first()
    if send is None:
        raise NotFound("send")
    if send.status not in allowed:
        raise WrongState(f"a {send.status} send cannot become {to}")
    send.status = to
    session.add(send)
    session.flush()
    return send
