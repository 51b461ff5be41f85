"""Acting on a bounce or complaint report, whichever channel it came by.

A report names the message it is about (by the outbox id in its VERP address) or, from a
provider whose notification is signed, the recipient's address. Handling records a
`BounceEvent`, then by its kind:

- hard: the address is suppressed at once;
- soft: suppressed once `soft_limit` different messages soft-bounced within the window;
- policy: the operator is alerted (an error in the log); the reader is kept;
- complaint: the reader is unsubscribed from every list (a consent event says why) and
  the address suppressed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from mailer.bounces.classify import classify
from mailer.config import BounceSettings
from mailer.logs import redact
from mailer.models import (
    BounceEvent,
    BounceKind,
    OutboxMessage,
    Subscriber,
    SuppressionReason,
    WebhookEvent,
)
from mailer.subscriptions import directory, leaving, ledger, suppression
from mailer.webhooks import events

log = logging.getLogger(__name__)

COMPLAINT_TYPES = {"abuse"}
"""ARF feedback types (RFC 5965) that count as a complaint; `not-spam` and the rest don't."""


@dataclass(frozen=True)
class Report:
    """One receiver's word about one recipient of one message."""

    source: str
    """smtp, dsn, arf, or a provider's name (ses, postmark, mailgun)."""
    status: str = ""
    """RFC 3463 status, e.g. "5.1.1"; "" when there is none."""
    action: str = "failed"
    """DSN action (failed, delayed, ...) or, for a complaint, its feedback type (abuse)."""
    complaint: bool = False
    detail: str = ""
    outbox_id: int | None = None
    """The message, read from the VERP address the report came back to."""
    address: str = ""
    """The recipient, when the source names it and is trusted to (signed webhooks)."""


@dataclass
class Outcome:
    kind: BounceKind | None
    """None: the report was ignored (see `reason`)."""
    subscriber_id: int | None = None
    suppressed: bool = False
    unsubscribed: list[str] = field(default_factory=list)
    reason: str = ""


def handle(session: Session, report: Report, settings: BounceSettings, now: datetime) -> Outcome:
    """Record the report and act on it, in the caller's transaction."""
    if report.complaint:
        kind: BounceKind | None = (
            BounceKind.complaint if report.action.strip().lower() in COMPLAINT_TYPES else None
        )
        if kind is None:
            return Outcome(None, reason=f"feedback type {report.action!r} is not a complaint")
    else:
        kind = classify(report.status, report.action, report.detail)
        if kind is None:
            return Outcome(None, reason=f"not a failure (action {report.action!r})")
    subscriber = _subscriber(session, report)
    if subscriber is None:
        return Outcome(None, reason="the report names no message or reader of ours")
    assert subscriber.id is not None
    session.add(
        BounceEvent(
            at=now,
            kind=kind.value,
            status=report.status[:16],
            action=report.action[:32],
            source=report.source[:32],
            outbox_id=report.outbox_id,
            subscriber_id=subscriber.id,
            detail=redact(report.detail)[:2000],
        )
    )
    session.flush()
    outcome = Outcome(kind, subscriber.id)
    window = now - timedelta(days=settings.soft_window_days)
    if subscriber.erased_at is not None:
        outcome.reason = "the reader was erased"
        return outcome
    if kind == BounceKind.hard:
        _suppress(session, subscriber, SuppressionReason.hard_bounce, report, now, outcome)
    elif kind == BounceKind.soft and _soft_count(session, subscriber.id, window) >= (
        settings.soft_limit
    ):
        _suppress(session, subscriber, SuppressionReason.soft_bounce, report, now, outcome)
    elif kind == BounceKind.policy:
        log.error(
            "a receiver refused our mail by policy (%s, via %s): %s; the sending setup "
            "(DKIM, SPF, DMARC, reputation or content) needs attention; the reader is kept",
            report.status or "no status",
            report.source,
            redact(report.detail)[:500],
            extra={"subscriber_id": subscriber.id, "outbox_id": report.outbox_id},
        )
    elif kind == BounceKind.complaint:
        context = ledger.ConsentContext(
            consent_text=f"complaint: the reader reported our mail as spam ({report.source})"
        )
        outcome.unsubscribed = leaving.unsubscribe(session, subscriber.id, None, context, now)
        _suppress(session, subscriber, SuppressionReason.complaint, report, now, outcome)
    if kind in (BounceKind.hard, BounceKind.soft):
        events.emit(
            session,
            WebhookEvent.subscriber_bounced,
            events.subscriber_data(
                subscriber,
                [],
                now,
                kind=kind.value,
                status=report.status,
                source=report.source,
                suppressed=outcome.suppressed,
            ),
            now,
        )
    return outcome


def _subscriber(session: Session, report: Report) -> Subscriber | None:
    if report.outbox_id is not None:
        row = session.get(OutboxMessage, report.outbox_id)
        return session.get(Subscriber, row.subscriber_id) if row is not None else None
    if report.address:
        return directory.by_address(session, report.address)
    return None


def _soft_count(session: Session, subscriber_id: int, since: datetime) -> int:
    """Different messages that soft-bounced since then (a report repeated about the same
    message counts once)."""
    distinct_messages = func.count(func.distinct(col(BounceEvent.outbox_id)))
    without_message = func.count().filter(col(BounceEvent.outbox_id).is_(None))
    counted = session.exec(
        select(distinct_messages, without_message).where(
            col(BounceEvent.subscriber_id) == subscriber_id,
            col(BounceEvent.kind) == BounceKind.soft,
            col(BounceEvent.at) >= since,
        )
    ).one()
    return int(counted[0] or 0) + int(counted[1] or 0)


def _suppress(
    session: Session,
    subscriber: Subscriber,
    reason: SuppressionReason,
    report: Report,
    now: datetime,
    outcome: Outcome,
) -> None:
    detail = f"{report.source} {report.status or report.action}: {redact(report.detail)}"
    suppression.suppress(session, subscriber, reason, detail, now)
    outcome.suppressed = True
    log.info(
        "subscriber %s suppressed (%s via %s)",
        subscriber.id,
        reason.value,
        report.source,
        extra={"subscriber_id": subscriber.id},
    )
