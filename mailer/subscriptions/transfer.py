"""CSV import (as confirmed, with an `imported` consent event per row) and CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy import select as sa_select
from sqlmodel import col, select

from mailer.db import insert_many_unless_present, session_scope
from mailer.errors import Invalid
from mailer.models import (
    ConsentAction,
    MailingList,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    WebhookEvent,
)
from mailer.subscriptions import ledger, suppression
from mailer.subscriptions.addresses import address_key, check_header_safe, normalize_email
from mailer.subscriptions.catalog import list_by_slug
from mailer.webhooks import events

IMPORT_BATCH = 500


@dataclass
class ImportReport:
    imported: int = 0
    already_confirmed: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)
    """(line number, reason) for each row not imported."""


def read_rows(handle: Iterable[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) pairs of a CSV with an `email` column."""
    reader = csv.DictReader(handle)
    if reader.fieldnames is None or "email" not in [h.strip().lower() for h in reader.fieldnames]:
        raise Invalid("file", "the CSV needs a header row with an 'email' column")
    for row in reader:
        cleaned = {
            (k or "").strip().lower(): (v or "") for k, v in row.items() if isinstance(v, str)
        }
        yield reader.line_num, cleaned


def import_csv(
    engine: Engine,
    handle: Iterable[str],
    list_slug: str,
    source: str,
    now: Callable[[], datetime],
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import rows as confirmed subscribers of `list_slug`, in batches of IMPORT_BATCH."""
    report = ImportReport()
    with session_scope(engine) as session:
        list_by_slug(session, list_slug)  # fail before reading when the list is unknown
    batch: list[tuple[int, str, str]] = []
    seen: set[str] = set()
    for line, row in read_rows(handle):
        try:
            email = normalize_email(row.get("email", ""))
            name = check_header_safe("name", row.get("name", "").strip())
        except Invalid as exc:
            report.skipped.append(
                (line, exc.message if exc.field == "name" else f"invalid address: {exc.message}")
            )
            continue
        if address_key(email) in seen:
            report.skipped.append((line, "duplicate of an earlier row"))
            continue
        seen.add(address_key(email))
        batch.append((line, email, name))
        if len(batch) >= IMPORT_BATCH:
            _import_batch(engine, batch, list_slug, source, now(), report)
            if progress:
                progress(len(batch))
            batch = []
    if batch:
        _import_batch(engine, batch, list_slug, source, now(), report)
        if progress:
            progress(len(batch))
    return report


def _import_batch(
    engine: Engine,
    batch: list[tuple[int, str, str]],
    list_slug: str,
    source: str,
    now: datetime,
    report: ImportReport,
) -> None:
    """One transaction for the batch: the new addresses inserted in one statement, the
    subscribers (locked, in id order) and their subscriptions read in one query each, the
    rows' changes and consent events written together when the transaction commits."""
    context = ledger.ConsentContext(consent_text=f"imported from {source}")
    with session_scope(engine) as session:
        mailing_list = list_by_slug(session, list_slug)
        assert mailing_list.id is not None
        suppressed = suppression.reasons_by_address(session, [email for _, email, _ in batch])
        wanted = [(line, email, name) for line, email, name in batch if email not in suppressed]
        insert_many_unless_present(
            session,
            Subscriber,
            "email_key",
            [
                {
                    "email": email,
                    "email_key": address_key(email),
                    "name": name,
                    "created_at": now,
                    "chain_head": "",
                    "chain_length": 0,
                }
                for _, email, name in wanted
            ],
        )
        subscribers = {
            subscriber.email_key: subscriber
            for subscriber in session.scalars(
                select(Subscriber)
                .where(col(Subscriber.email_key).in_([address_key(e) for _, e, _ in wanted]))
                .order_by(col(Subscriber.id))
                .with_for_update()
            )
        }
        subscriptions = {
            subscription.subscriber_id: subscription
            for subscription in session.scalars(
                select(Subscription).where(
                    col(Subscription.list_id) == mailing_list.id,
                    col(Subscription.subscriber_id).in_(
                        [subscriber.id for subscriber in subscribers.values()]
                    ),
                )
            )
        }
        with session.no_autoflush:
            for line, email, name in batch:
                if email in suppressed:
                    report.skipped.append((line, f"suppressed ({suppressed[email]}); not added"))
                    continue
                subscriber = subscribers[address_key(email)]
                assert subscriber.id is not None
                existing = subscriptions.get(subscriber.id)
                if existing is not None and existing.status == SubscriptionStatus.confirmed:
                    report.already_confirmed += 1
                    continue
                if existing is not None and existing.status == SubscriptionStatus.unsubscribed:
                    report.skipped.append((line, "unsubscribed earlier; not re-added"))
                    continue
                if existing is None:
                    existing = Subscription(
                        subscriber_id=subscriber.id,
                        list_id=mailing_list.id,
                        created_at=now,
                        updated_at=now,
                    )
                existing.status = SubscriptionStatus.confirmed
                existing.confirmed_at = now
                existing.updated_at = now
                session.add(existing)
                if name and not subscriber.name:
                    subscriber.name = name
                ledger.append(
                    session, subscriber, ConsentAction.imported, [list_slug], context, now
                )
                data = events.subscriber_data(
                    subscriber,
                    [list_slug],
                    now,
                    status=SubscriptionStatus.confirmed,
                    source="import",
                )
                events.emit(session, WebhookEvent.subscriber_created, data, now)
                report.imported += 1


EXPORT_COLUMNS = ["email", "name", "list", "status", "subscribed_at", "confirmed_at"]


EXPORT_BATCH = 1000


def export_rows(engine: Engine, list_slug: str | None) -> Iterator[list[str]]:
    """Rows of (email, name, list, status, subscribed_at, confirmed_at), erased excluded.

    Read in batches, each in its own short transaction, so a long export never holds
    the database (SQLite has one writer) while the rows are being sent.
    """
    # sqlalchemy's select: sqlmodel's is typed for at most four columns
    query = (
        sa_select(
            col(Subscription.id),
            col(Subscriber.email),
            col(Subscriber.name),
            col(MailingList.slug),
            col(Subscription.status),
            col(Subscription.created_at),
            col(Subscription.confirmed_at),
        )
        .join(Subscription, col(Subscription.subscriber_id) == Subscriber.id)
        .join(MailingList, col(MailingList.id) == Subscription.list_id)
        .where(col(Subscriber.erased_at).is_(None))
        .order_by(col(Subscription.id))
        .limit(EXPORT_BATCH)
    )
    if list_slug:
        query = query.where(col(MailingList.slug) == list_slug)
    after = 0
    while True:
        with session_scope(engine) as session:
            batch = session.execute(query.where(col(Subscription.id) > after)).all()
        for row_id, email, name, slug, status, created_at, confirmed_at in batch:
            after = row_id
            yield [
                email,
                name,
                slug,
                status,
                created_at.isoformat(),
                confirmed_at.isoformat() if confirmed_at else "",
            ]
        if len(batch) < EXPORT_BATCH:
            return


def export_csv_lines(engine: Engine, list_slug: str | None) -> Iterator[str]:
    """The export as CSV text, a header line first, one line at a time."""
    yield csv_line(EXPORT_COLUMNS)
    for row in export_rows(engine, list_slug):
        yield csv_line(row)


def csv_line(values: list[str]) -> str:
    """One CSV line; cells starting with = + - @ are quoted against spreadsheet formulas."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow(["'" + v if v[:1] in ("=", "+", "-", "@") else v for v in values])
    return buffer.getvalue()
