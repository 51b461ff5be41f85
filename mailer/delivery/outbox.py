"""The outbox table as a queue: claim due rows under a lease, record each outcome.

`claim_due` marks rows `sending` with a lease; a sender that dies leaves its rows to be
claimed again once the lease runs out. On PostgreSQL claims use FOR UPDATE SKIP LOCKED,
so several senders never take the same row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, insert, update
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from mailer.models import DeliveryAttempt, OutboxMessage, OutboxStatus, Send, SendStatus


def _not_held() -> ColumnElement[bool]:
    """Rows of no send, or of a send that is neither paused nor cancelled."""
    held = select(Send.id).where(col(Send.status).in_([SendStatus.paused, SendStatus.cancelled]))
    return col(OutboxMessage.send_id).is_(None) | col(OutboxMessage.send_id).not_in(held)


def claim_due(session: Session, now: datetime, limit: int, lease: timedelta) -> list[int]:
    """Take up to `limit` due rows: sets them `sending` until now + lease. Returns their ids.

    Rows whose lease ran out (their sender died) come first, then queued rows in the order
    they fell due. Each is one walk of the (status, next_attempt_at) index that stops at
    `limit`, so a claim costs the same with a million rows queued as with a hundred."""
    expired = (
        select(col(OutboxMessage.id))
        .where(
            col(OutboxMessage.status) == OutboxStatus.sending,
            col(OutboxMessage.lease_until) < now,
            _not_held(),
        )
        .order_by(col(OutboxMessage.next_attempt_at))
    )
    ids = _lock(session, expired, limit)
    if len(ids) < limit:
        queued = (
            select(col(OutboxMessage.id))
            .where(
                col(OutboxMessage.status) == OutboxStatus.queued,
                col(OutboxMessage.next_attempt_at) <= now,
                _not_held(),
            )
            .order_by(col(OutboxMessage.next_attempt_at))
        )
        ids += _lock(session, queued, limit - len(ids))
    if ids:
        session.execute(
            update(OutboxMessage)
            .where(col(OutboxMessage.id).in_(ids))
            .values(
                status=OutboxStatus.sending,
                lease_until=now + lease,
                attempts=OutboxMessage.attempts + 1,
            )
        )
    return ids


def _lock(session: Session, statement: SelectOfScalar[int | None], limit: int) -> list[int]:
    """The ids the statement finds, locked; rows another sender holds are skipped."""
    found = session.exec(statement.limit(limit).with_for_update(skip_locked=True))
    return [row_id for row_id in found if row_id is not None]


def release(session: Session, ids: list[int]) -> None:
    """Side effect: claimed rows that were not attempted are due again at once (a sender
    stopping hands back the batch it had prepared)."""
    _update_in_flight(
        session,
        ids,
        status=OutboxStatus.queued,
        lease_until=None,
        attempts=OutboxMessage.attempts - 1,
    )


def _update_in_flight(session: Session, ids: list[int], **values: Any) -> None:
    """Set `values` on those of these rows that are still being sent."""
    if ids:
        session.execute(
            update(OutboxMessage)
            .where(
                col(OutboxMessage.id).in_(ids),
                col(OutboxMessage.status) == OutboxStatus.sending,
            )
            .values(**values)
        )


@dataclass(frozen=True)
class Failure:
    message_id: int
    attempt: int
    reply: str
    retry_at: datetime | None
    """When to try again; None: failed for good."""


def extend_lease(session: Session, ids: list[int], until: datetime) -> None:
    """Side effect: rows still being sent keep their lease until `until` (a long batch under
    a low rate limit must not be taken over while its sender is alive)."""
    _update_in_flight(session, ids, lease_until=until)


def record_outcomes(
    session: Session, sent: list[tuple[int, str]], failures: list[Failure], now: datetime
) -> None:
    """Side effects, one statement per kind for the whole batch: delivered rows become
    `sent`; failed rows are queued again at their retry time or `failed` for good. A row
    dropped meanwhile (its send cancelled) stays dropped unless it was in fact delivered.
    Each failed attempt is kept, with its reply, in `delivery_attempts`."""
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    if sent:
        session.connection().execute(
            update(table)
            .where(table.c.id == bindparam("row_id"))
            .values(
                status=OutboxStatus.sent,
                sent_at=now,
                lease_until=None,
                last_reply=bindparam("reply"),
            ),
            [{"row_id": row_id, "reply": reply[:1000]} for row_id, reply in sent],
        )
    if failures:
        session.connection().execute(
            update(table)
            .where(table.c.id == bindparam("row_id"), table.c.status == OutboxStatus.sending)
            .values(
                status=bindparam("new_status"),
                lease_until=None,
                # Typed, so SQLite stores it in the column's format (not str(datetime)).
                next_attempt_at=func.coalesce(
                    bindparam("retry_at", type_=table.c.next_attempt_at.type),
                    table.c.next_attempt_at,
                ),
                last_reply=bindparam("reply"),
            ),
            [
                {
                    "row_id": f.message_id,
                    "reply": f.reply[:1000],
                    "retry_at": f.retry_at,
                    "new_status": OutboxStatus.queued if f.retry_at else OutboxStatus.failed,
                }
                for f in failures
            ],
        )
        session.execute(
            insert(DeliveryAttempt),
            [
                {
                    "outbox_id": f.message_id,
                    "attempt": f.attempt,
                    "at": now,
                    "outcome": "deferred" if f.retry_at else "failed",
                    "reply": f.reply[:1000],
                }
                for f in failures
            ],
        )


def retry_delay(attempts: int, base_seconds: float) -> timedelta:
    """Exponential backoff: base, 2*base, 4*base, ... capped at six hours."""
    return timedelta(seconds=min(base_seconds * 2 ** max(attempts - 1, 0), 6 * 3600))


def depth(session: Session) -> int:
    """Rows queued (now or for a retry) or being sent."""
    statement = (
        select(func.count())
        .select_from(OutboxMessage)
        .where(col(OutboxMessage.status).in_([OutboxStatus.queued, OutboxStatus.sending]))
    )
    return int(session.exec(statement).one())
