"""Inbound bounce reports: how fast the corpus is read, and how many DSNs per second the
SMTP listener takes into a SQLite database.

Printed: per sample, reports read per second by `mailer.bounces.reports.read` against the
email package's parse alone (the floor); then DSNs per second through the listener over
one SMTP connection, each handled (a hard bounce suppressing its reader) and committed.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from pathlib import Path

import aiosmtplib
from sqlalchemy import Engine
from sqlmodel import select

from mailer import config, db
from mailer.bounces.intake import Intake
from mailer.bounces.listener import BounceListener
from mailer.bounces.reports import read
from mailer.bounces.verp import bounce_domain
from mailer.clock import SystemClock
from mailer.models import MailingList, OutboxMessage, Subscriber, Subscription
from mailer.tokens import Signer

SAMPLES = Path(__file__).resolve().parent.parent / "tests" / "data" / "bounces"
SECRET = "bench-secret-key-that-is-long-enough-for-production-0123456789"


def per_second(work: Callable[[], object], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        work()
        count += 1
    return count / elapsed


def read_rates(signer: Signer, verp: str, seconds: float) -> None:
    print(f"{'sample':44} {'read/s':>9} {'parse-only/s':>13}")
    for path in sorted(SAMPLES.glob("*.eml")):
        data = path.read_text().replace("{{VERP}}", verp).replace("{{RECIPIENT}}", "r@x.example")
        raw = data.encode()
        ours = per_second(lambda raw=raw: read(raw, signer), seconds)
        floor = per_second(
            lambda raw=raw: BytesParser(policy=policy.default).parsebytes(raw), seconds
        )
        print(f"{path.name:44} {ours:9.0f} {floor:13.0f}")


def readers(engine: Engine, count: int) -> list[int]:
    """`count` confirmed readers, each sent one message; their outbox ids."""
    now = SystemClock().now()
    ids = []
    with db.session_scope(engine) as session:
        news = session.exec(select(MailingList).where(MailingList.slug == "news")).one()
        for n in range(count):
            email = f"reader{n}@example.net"
            subscriber = Subscriber(email=email, email_key=email, created_at=now)
            session.add(subscriber)
            session.flush()
            assert subscriber.id is not None and news.id is not None
            session.add(
                Subscription(
                    subscriber_id=subscriber.id,
                    list_id=news.id,
                    status="confirmed",
                    created_at=now,
                    updated_at=now,
                )
            )
            row = OutboxMessage(
                kind="digest",
                subscriber_id=subscriber.id,
                status="sent",
                next_attempt_at=now,
                created_at=now,
            )
            session.add(row)
            session.flush()
            assert row.id is not None
            ids.append(row.id)
    return ids


async def send_all(port: int, messages: list[tuple[str, bytes]]) -> None:
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as client:
        for recipient, data in messages:
            await client.sendmail("", [recipient], data)


def listener_rate(count: int) -> None:
    directory = Path(tempfile.mkdtemp(prefix="mailer-bench-bounces-"))
    settings = config.load(
        database={"url": f"sqlite:///{directory}/mailer.db"},
        secret_key=SECRET,
        mail={"from_address": "news@example.org"},
    )
    engine = db.make_engine(settings)
    db.upgrade(engine)
    signer = Signer(config.signing_key(settings))
    template = (SAMPLES / "postfix-5.1.1-user-unknown.eml").read_text()
    domain = bounce_domain(settings)
    messages = []
    for outbox_id in readers(engine, count):
        verp = f"bounces+{signer.return_path_tag(outbox_id)}@{domain}"
        data = template.replace("{{VERP}}", verp).replace("{{RECIPIENT}}", "r@x.example")
        messages.append((verp, data.encode()))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    intake = Intake(engine, signer, settings.bounces, SystemClock())
    listener = BounceListener(intake, domain, "127.0.0.1", port, 1_000_000)
    listener.start()
    try:
        start = time.perf_counter()
        asyncio.run(send_all(port, messages))
        elapsed = time.perf_counter() - start
    finally:
        listener.stop()
    print(
        f"listener: {count} DSNs in {elapsed:.2f} s = {count / elapsed:.0f} DSNs/s "
        f"(SQLite, one connection; counted {dict(intake.counts)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.3, help="per sample")
    parser.add_argument("--messages", type=int, default=300, help="DSNs through the listener")
    args = parser.parse_args()
    signer = Signer(config.signing_key(config.load(secret_key=SECRET)))
    read_rates(signer, f"bounces+{signer.return_path_tag(42)}@example.org", args.seconds)
    listener_rate(args.messages)


if __name__ == "__main__":
    main()
