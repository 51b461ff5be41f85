"""Migration 0012 on a database that holds one reader under several spellings: they become
one subscriber with every consent event in a chain that verifies, the strongest status per
list, one suppression, and links already sent still working."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, select

from mailer import config, db
from mailer.models import (
    ConsentAction,
    ConsentEvent,
    MailingList,
    OutboxMessage,
    Subscriber,
    Subscription,
    Suppression,
)
from mailer.subscriptions import leaving, ledger
from mailer.subscriptions.addresses import address_digest
from tests.conftest import PG_ADMIN, SECRET, _pg_url

pytestmark = pytest.mark.both_databases
"""Migrations run dialect-specific DDL: both databases."""

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def engine_at_0011(db_kind: str, tmp_path: Path) -> Iterator[Engine]:
    """An empty database migrated up to revision 0011 only."""
    if db_kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        name = ""
    else:
        name = f"mailer_m_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = _pg_url(name)
    engine = db.make_engine(config.load(database={"url": url}, secret_key=SECRET))
    db.upgrade(engine, "0011")
    yield engine
    engine.dispose()
    if name:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Rows are written with the tables' own column types, as the application writes them.
SUBSCRIBERS = Subscriber.__table__  # type: ignore[attr-defined]
EVENTS = ConsentEvent.__table__  # type: ignore[attr-defined]


def add_subscriber(session: Session, email: str, created: datetime) -> int:
    """A subscriber row as revision 0011 had them (no canonical address)."""
    return int(
        session.execute(
            SUBSCRIBERS.insert()
            .values(email=email, name="", created_at=created, chain_head="", chain_length=0)
            .returning(SUBSCRIBERS.c.id)
        ).scalar_one()
    )


def add_event(
    session: Session, subscriber_id: int, action: str, lists: list[str], at: datetime, ip: str = ""
) -> None:
    """The next event of the subscriber's chain, hashed as the ledger of revision 0011 did."""
    head, length = session.execute(
        text("SELECT chain_head, chain_length FROM subscribers WHERE id = :id"),
        {"id": subscriber_id},
    ).one()
    event = ConsentEvent(
        subscriber_id=subscriber_id,
        seq=length + 1,
        action=action,
        at=at,
        lists=lists,
        form="default",
        consent_text="By submitting this form, I agree to the terms.",
        consent_version=1,
        source_url="https://news.example/a",
        ip=ip,
        user_agent="UA",
        prev_hash=head,
        hash="",
    )
    event.hash = ledger.event_hash(event)
    session.execute(EVENTS.insert().values(**event.model_dump(exclude={"id"})))
    session.execute(
        text("UPDATE subscribers SET chain_head = :h, chain_length = :n WHERE id = :id"),
        {"h": event.hash, "n": event.seq, "id": subscriber_id},
    )


def subscribe(
    session: Session, subscriber_id: int, list_id: int, status: str, changed: datetime
) -> None:
    session.execute(
        Subscription.__table__.insert().values(  # type: ignore[attr-defined]
            subscriber_id=subscriber_id,
            list_id=list_id,
            status=status,
            topics=[],
            created_at=changed,
            updated_at=changed,
            confirmed_at=changed if status != "pending" else None,
        )
    )


@pytest.fixture
def duplicates(engine_at_0011: Engine) -> dict[str, Any]:
    """One reader as `Reader@Example.org` (oldest), `reader@example.org` and
    `READER@EXAMPLE.ORG`; another as `Ana@Bücher.example` and `ana@xn--bcher-kva.example`;
    and a reader with one spelling only."""
    with db.session_scope(engine_at_0011) as session:
        news = session.execute(text("SELECT id FROM lists WHERE slug = 'news'")).scalar_one()
        lists = MailingList.__table__  # type: ignore[attr-defined]
        sport = session.execute(
            lists.insert()
            .values(
                slug="sport",
                name="Sport",
                description="",
                welcome_enabled=False,
                welcome_articles=0,
                archive_enabled=False,
                created_at=T0,
            )
            .returning(lists.c.id)
        ).scalar_one()
        first = add_subscriber(session, "Reader@example.org", T0)
        second = add_subscriber(session, "reader@example.org", T0 + timedelta(days=1))
        third = add_subscriber(session, "READER@example.org", T0 + timedelta(days=2))
        ana = add_subscriber(session, "Ana@bücher.example", T0)
        ana2 = add_subscriber(session, "ana@bücher.example", T0 + timedelta(hours=1))
        alone = add_subscriber(session, "Alone@example.org", T0)

        add_event(session, first, "requested", ["news"], T0, ip="198.51.100.1")
        add_event(session, first, "confirmed", ["news"], T0 + timedelta(minutes=5))
        add_event(session, second, "requested", ["sport"], T0 + timedelta(days=1))
        add_event(session, second, "confirmed", ["sport"], T0 + timedelta(days=1, minutes=1))
        add_event(session, first, "unsubscribed", ["news"], T0 + timedelta(days=3))
        add_event(session, third, "requested", ["news"], T0 + timedelta(days=4))
        add_event(session, third, "confirmed", ["news"], T0 + timedelta(days=4, minutes=2))
        add_event(session, ana, "requested", ["news"], T0)
        add_event(session, ana2, "requested", ["news"], T0 + timedelta(hours=1))
        add_event(session, ana2, "confirmed", ["news"], T0 + timedelta(hours=2))
        add_event(session, alone, "requested", ["news"], T0)

        # news: unsubscribed as `first` (day 3), confirmed again as `third` (day 4);
        # sport: confirmed as `second` only.
        subscribe(session, first, news, "unsubscribed", T0 + timedelta(days=3))
        subscribe(session, third, news, "confirmed", T0 + timedelta(days=4))
        subscribe(session, second, sport, "confirmed", T0 + timedelta(days=1))
        subscribe(session, ana, news, "pending", T0)
        subscribe(session, ana2, news, "confirmed", T0 + timedelta(hours=2))
        subscribe(session, alone, news, "pending", T0)

        # The spelling `second` bounced hard: suppressed under the digest of its spelling.
        session.execute(
            Suppression.__table__.insert().values(  # type: ignore[attr-defined]
                address_hash=hashlib.sha256(b"reader@example.org").hexdigest(),
                subscriber_id=second,
                reason="hard-bounce",
                detail="550 5.1.1",
                created_at=T0 + timedelta(days=2),
            )
        )
        session.execute(
            OutboxMessage.__table__.insert().values(  # type: ignore[attr-defined]
                kind="confirmation",
                subscriber_id=third,
                status="sent",
                attempts=1,
                next_attempt_at=T0 + timedelta(days=4),
                last_reply="",
                created_at=T0 + timedelta(days=4),
            )
        )
    return {
        "first": first,
        "second": second,
        "third": third,
        "ana": ana,
        "ana2": ana2,
        "alone": alone,
        "news": news,
        "sport": sport,
    }


def test_spellings_of_one_address_become_one_subscriber_with_every_event_and_a_valid_chain(
    engine_at_0011: Engine, duplicates: dict[str, Any]
) -> None:
    db.upgrade(engine_at_0011, "0012")

    with db.session_scope(engine_at_0011) as session:
        readers = {s.email_key: s for s in session.scalars(select(Subscriber))}
        assert set(readers) == {
            "reader@example.org",
            "ana@xn--bcher-kva.example",
            "alone@example.org",
        }
        reader = readers["reader@example.org"]
        assert reader.id == duplicates["first"], "the oldest row survives"
        assert reader.email == "Reader@example.org", "with its spelling"
        assert readers["ana@xn--bcher-kva.example"].email == "Ana@bücher.example"
        assert readers["alone@example.org"].email == "Alone@example.org"

        for subscriber in readers.values():
            assert ledger.verify(session, subscriber).valid, subscriber.email
        events = ledger.events_of(session, reader.id or 0)
        assert [e.action for e in events] == [
            "requested",
            "confirmed",
            "requested",
            "confirmed",
            "unsubscribed",
            "requested",
            "confirmed",
            ConsentAction.merged,
        ]
        assert [e.at for e in events[:-1]] == sorted(e.at for e in events[:-1])
        assert events[0].ip == "198.51.100.1", "the events keep their fields"
        merged_note = events[-1].consent_text
        assert f"#{duplicates['second']}" in merged_note and "verified" in merged_note
        assert "reader@" not in merged_note.lower(), "no address in the note"
        assert len(ledger.events_of(session, readers["ana@xn--bcher-kva.example"].id or 0)) == 4

        statuses = {
            sub.list_id: sub.status
            for sub in session.scalars(
                select(Subscription).where(col(Subscription.subscriber_id) == reader.id)
            )
        }
        assert statuses == {
            duplicates["news"]: "unsubscribed",  # an unsubscribe is never undone by a merge
            duplicates["sport"]: "confirmed",
        }
        [ana_news] = session.scalars(
            select(Subscription).where(
                col(Subscription.subscriber_id) == readers["ana@xn--bcher-kva.example"].id
            )
        )
        assert ana_news.status == "confirmed", "confirmed beats pending"

        [suppressed] = session.scalars(select(Suppression))
        assert suppressed.address_hash == address_digest("READER@Example.ORG")
        assert suppressed.subscriber_id == reader.id
        [mail] = session.scalars(select(OutboxMessage))
        assert mail.subscriber_id == reader.id


def test_an_unsubscribe_link_sent_to_a_merged_spelling_still_unsubscribes(
    engine_at_0011: Engine, duplicates: dict[str, Any]
) -> None:
    db.upgrade(engine_at_0011, "0012")
    with db.session_scope(engine_at_0011) as session:
        left = leaving.unsubscribe(
            session,
            duplicates["second"],
            None,
            ledger.ConsentContext(form="one-click"),
            T0 + timedelta(days=30),
        )
        assert left == ["sport"]
        survivor = session.get(Subscriber, duplicates["first"])
        assert survivor is not None and ledger.verify(session, survivor).valid


def test_the_database_refuses_a_second_spelling_after_the_migration(
    engine_at_0011: Engine, duplicates: dict[str, Any]
) -> None:
    db.upgrade(engine_at_0011, "0012")
    with (
        pytest.raises(DBAPIError, match="(?i)unique"),
        db.session_scope(engine_at_0011) as session,
    ):
        session.execute(
            SUBSCRIBERS.insert().values(
                email="rEader@example.org",
                email_key="reader@example.org",
                name="",
                created_at=T0,
                chain_head="",
                chain_length=0,
            )
        )
    with db.session_scope(engine_at_0011) as session:
        event = session.scalars(select(ConsentEvent)).first()
        assert event is not None
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(text("DELETE FROM consent_events WHERE id = :id"), {"id": event.id})
            session.flush()
