"""Bounce reports for tests of the bounce intake, loaded as a pytest plugin by conftest:
the corpus in tests/data/bounces/ with a reader's address and our VERP address filled
in, a reader who was sent a message to bounce, the intake and the SMTP listener
(`listener` fixture) that take reports, and what became of the reader."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from sqlmodel import col, select

from mailer.bounces.intake import Intake
from mailer.bounces.listener import BounceListener
from mailer.bounces.verp import bounce_domain
from mailer.db import session_scope
from mailer.models import ConsentEvent, OutboxMessage, Subscriber, Subscription
from mailer.services import Services
from mailer.subscriptions import suppression
from tests.conftest import free_port
from tests.factories import add_readers

READER = "jordan@mail-host.example.net"


SAMPLES = Path(__file__).parent / "data" / "bounces"
"""The corpus: a report per file, {{VERP}} and {{RECIPIENT}} to be filled in."""


def reader_with_message(services: Services, email: str = READER) -> int:
    """A confirmed reader of `news` who was sent a digest; returns its outbox row's id."""
    now = services.clock.now()
    with session_scope(services.engine) as session:
        known = session.exec(select(Subscriber).where(Subscriber.email == email)).first()
    if known is None:
        add_readers(services, [email])
    with session_scope(services.engine) as session:
        subscriber = session.exec(select(Subscriber).where(Subscriber.email == email)).one()
        assert subscriber.id is not None
        row = OutboxMessage(
            kind="digest",
            subscriber_id=subscriber.id,
            status="sent",
            next_attempt_at=now,
            created_at=now,
            sent_at=now,
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


def sample(name: str, verp: str, recipient: str = READER) -> bytes:
    """A corpus file with our bounce address and the reader filled in."""
    text = (SAMPLES / name).read_text(encoding="utf-8")
    return text.replace("{{VERP}}", verp).replace("{{RECIPIENT}}", recipient).encode()


def intake_for(services: Services) -> Intake:
    return Intake.for_settings(services.settings, services.engine, services.signer, services.clock)


def reader_state(services: Services, email: str = READER) -> tuple[str | None, str, list[str]]:
    """The reader's suppression reason, subscription status on `news`, consent texts."""
    with session_scope(services.engine) as session:
        subscriber = session.exec(select(Subscriber).where(Subscriber.email == email)).one()
        [status] = session.exec(
            select(Subscription.status).where(Subscription.subscriber_id == subscriber.id)
        ).all()
        texts = session.exec(
            select(ConsentEvent.consent_text)
            .where(ConsentEvent.subscriber_id == subscriber.id)
            .order_by(col(ConsentEvent.seq))
        ).all()
        reasons = suppression.reasons_by_address(session, [email])
    return reasons.get(email), str(status), list(texts)


@pytest.fixture
def listener(services: Services) -> Iterator[BounceListener]:
    running = BounceListener(
        intake_for(services),
        bounce_domain(services.settings),
        "127.0.0.1",
        free_port(),
        services.settings.bounces.max_message_bytes,
    )
    running.start()
    yield running
    running.stop()


def deliver(
    listener: BounceListener | int, data: bytes, recipients: list[str], sender: str = ""
) -> Any:
    """Send one message to the listener over SMTP (a DSN comes from the null sender);
    returns the reply to DATA."""
    port = listener if isinstance(listener, int) else listener.port

    async def send() -> Any:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as client:
            return await client.sendmail(sender, recipients, data)

    return asyncio.run(send())
