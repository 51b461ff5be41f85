"""Subscriber numbers for the dashboard: confirmed readers per list at the end of each
day (replayed from the consent ledger), signups and unsubscribes per day, and the totals
by status now. Days are UTC days; the last one is today, counted up to `now`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import ColumnElement, func
from sqlalchemy.orm import Mapped
from sqlmodel import Session, col, select

from mailer.models import (
    BounceEvent,
    BounceKind,
    ConsentAction,
    ConsentEvent,
    MailingList,
    Subscription,
    SubscriptionStatus,
)

DAYS = 30

# How each action moves a reader's state on the event's lists (erased: on every list).
_JOINS = {ConsentAction.confirmed, ConsentAction.resubscribed, ConsentAction.imported}
_LEAVES = {ConsentAction.unsubscribed, ConsentAction.expired}


@dataclass(frozen=True)
class ListSeries:
    """A list's confirmed subscribers at the end of each day of the period."""

    list_id: int
    slug: str
    name: str
    counts: list[int]


@dataclass(frozen=True)
class DayActivity:
    day: date
    signups: int
    """Signup requests (`requested` events) that day."""
    unsubscribes: int
    """`unsubscribed` events that day (one per reader leaving, whatever the lists)."""


@dataclass(frozen=True)
class ListTotal:
    list_id: int
    name: str
    confirmed: int


@dataclass(frozen=True)
class Totals:
    confirmed_by_list: list[ListTotal]
    pending: int
    """Subscriptions waiting for their reader's confirmation."""
    unsubscribed: int


def period(now: datetime, days: int = DAYS) -> list[date]:
    """The UTC days of the period ending today, oldest first."""
    today = now.astimezone(UTC).date()
    return [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def confirmed_per_day(session: Session, now: datetime, days: int = DAYS) -> list[ListSeries]:
    """Confirmed subscribers of each list at the end of each day of `period(now, days)`.

    Readers with no consent event since the period began kept their state all along, so
    they are counted from `subscriptions` in one aggregate; only the readers with recent
    events have their ledger replayed. Two queries, whatever the number of days or lists.
    """
    days_list = period(now, days)
    start = _start_of(days_list[0])
    lists = list(session.exec(select(MailingList).order_by(col(MailingList.name))))
    by_slug = {mailing_list.slug: mailing_list.id or 0 for mailing_list in lists}
    recent = (
        select(ConsentEvent.subscriber_id).where(col(ConsentEvent.at) >= start).distinct()
    ).scalar_subquery()

    baseline: dict[int, int] = {list_id: 0 for list_id in by_slug.values()}
    for list_id, count in session.exec(
        select(Subscription.list_id, func.count())
        .where(
            col(Subscription.status) == SubscriptionStatus.confirmed,
            col(Subscription.subscriber_id).not_in(recent),
        )
        .group_by(col(Subscription.list_id))
    ):
        baseline[list_id] = baseline.get(list_id, 0) + count

    changes: dict[int, list[int]] = {list_id: [0] * days for list_id in baseline}
    events = session.exec(
        select(ConsentEvent.subscriber_id, ConsentEvent.action, ConsentEvent.at, ConsentEvent.lists)
        .where(col(ConsentEvent.subscriber_id).in_(recent))
        .order_by(col(ConsentEvent.subscriber_id), col(ConsentEvent.seq))
    )
    for confirmed_before, moves in _replay(events, by_slug, start, now):
        for list_id in confirmed_before:
            baseline[list_id] += 1
        for list_id, day_index, step in moves:
            changes[list_id][day_index] += step

    series = []
    for mailing_list in lists:
        list_id = mailing_list.id or 0
        running = baseline[list_id]
        counts = []
        for step in changes[list_id]:
            running += step
            counts.append(running)
        series.append(ListSeries(list_id, mailing_list.slug, mailing_list.name, counts))
    return series


def _replay(
    events: Iterable[tuple[int, str, datetime, Sequence[str]]],
    by_slug: dict[str, int],
    start: datetime,
    now: datetime,
) -> Iterable[tuple[set[int], list[tuple[int, int, int]]]]:
    """Per reader (events grouped by reader, in order): the lists they were confirmed on
    when the period began, and each later change as (list id, day index, +1 or -1)."""
    current_reader: int | None = None
    confirmed: set[int] = set()
    before: set[int] = set()
    moves: list[tuple[int, int, int]] = []
    for subscriber_id, action, at, slugs in events:
        if subscriber_id != current_reader:
            if current_reader is not None:
                yield before, moves
            current_reader, confirmed, before, moves = subscriber_id, set(), set(), []
        at = _aware(at)
        if at > now:
            continue
        if action in _JOINS:
            after = confirmed | {by_slug[slug] for slug in slugs if slug in by_slug}
        elif action in _LEAVES:
            after = confirmed - {by_slug[slug] for slug in slugs if slug in by_slug}
        elif action == ConsentAction.erased:
            after = set()
        else:
            continue
        if at < start:
            before = after
        else:
            day_index = (at.date() - start.date()).days
            moves.extend((list_id, day_index, +1) for list_id in after - confirmed)
            moves.extend((list_id, day_index, -1) for list_id in confirmed - after)
        confirmed = after
    if current_reader is not None:
        yield before, moves


def _utc_day(session: Session, column: Mapped[datetime]) -> ColumnElement[str]:
    """The UTC day of a timestamp column as 'YYYY-MM-DD', in this database's dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.substr(column, 1, 10)  # SQLite stores UTC times as 'YYYY-MM-DD HH:MM:SS'


def activity_per_day(session: Session, now: datetime, days: int = DAYS) -> list[DayActivity]:
    """Signup requests and unsubscribes on each day of `period(now, days)` (one query)."""
    days_list = period(now, days)
    day = _utc_day(session, col(ConsentEvent.at))
    counts: dict[tuple[str, str], int] = {
        (str(day_value), action): count
        for day_value, action, count in session.exec(
            select(day, ConsentEvent.action, func.count())
            .where(
                col(ConsentEvent.at) >= _start_of(days_list[0]),
                col(ConsentEvent.at) <= now,
                col(ConsentEvent.action).in_([ConsentAction.requested, ConsentAction.unsubscribed]),
            )
            .group_by(day, col(ConsentEvent.action))
        )
    }
    return [
        DayActivity(
            one_day,
            counts.get((one_day.isoformat(), ConsentAction.requested), 0),
            counts.get((one_day.isoformat(), ConsentAction.unsubscribed), 0),
        )
        for one_day in days_list
    ]


def totals(session: Session) -> Totals:
    """Confirmed subscribers per list, and the pending and unsubscribed subscriptions."""
    lists = list(session.exec(select(MailingList).order_by(col(MailingList.name))))
    by_status: dict[tuple[int, str], int] = {
        (list_id, status): count
        for list_id, status, count in session.exec(
            select(Subscription.list_id, Subscription.status, func.count()).group_by(
                col(Subscription.list_id), col(Subscription.status)
            )
        )
    }

    def overall(status: SubscriptionStatus) -> int:
        return sum(count for (_, found), count in by_status.items() if found == status)

    return Totals(
        confirmed_by_list=[
            ListTotal(
                mailing_list.id or 0,
                mailing_list.name,
                by_status.get((mailing_list.id or 0, SubscriptionStatus.confirmed), 0),
            )
            for mailing_list in lists
        ],
        pending=overall(SubscriptionStatus.pending),
        unsubscribed=overall(SubscriptionStatus.unsubscribed),
    )


def bounces_by_kind(session: Session, now: datetime, days: int = DAYS) -> dict[str, int]:
    """Bounce events of each kind (hard, soft, policy, complaint) recorded in
    `period(now, days)`, zero for a kind with none (one query)."""
    counts = {kind.value: 0 for kind in BounceKind}
    for kind, count in session.exec(
        select(BounceEvent.kind, func.count())
        .where(
            col(BounceEvent.at) >= _start_of(period(now, days)[0]),
            col(BounceEvent.at) <= now,
        )
        .group_by(col(BounceEvent.kind))
    ):
        counts[kind] = count
    return counts
