"""Several `mailer worker` processes on one PostgreSQL database share a send's outbox.

Each worker is a real subprocess with its own From address, so every message the SMTP
sink records says which worker delivered it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session
from sqlalchemy import text

from mailer.clock import SystemClock
from mailer.content.articles import ArticleInput, upsert
from mailer.content.digests import create
from mailer.db import session_scope
from mailer.delivery import sends
from mailer.delivery.sends import Progress
from mailer.services import Services
from tests.conftest import SECRET, Received, SmtpSink

# Only PostgreSQL claims with FOR UPDATE SKIP LOCKED; SQLite serves one worker at a time.
pytestmark = pytest.mark.parametrize("db_kind", ["postgresql"])

BATCH = 20
SMALL_BATCH = 5
"""Small batches make two workers claim often, so claims that collide would show."""
WORKER_A = "a-worker@example.org"
WORKER_B = "b-worker@example.org"


class PacedHandler:
    """Accepts each message after `delay`; optionally holds the `hold_at`-th message
    unanswered (setting `held`) until `release` is set, so its sender is caught mid-batch."""

    def __init__(self, sink: SmtpSink, delay: float, hold_at: int = 0) -> None:
        self.record = sink.handler.handle_DATA
        self.delay = delay
        self.hold_at = hold_at
        self.arrived = 0
        self.held = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        self.arrived += 1  # the controller's one event loop runs every handler
        if self.arrived == self.hold_at:
            self.held.set()
            while not self.release.is_set():
                await asyncio.sleep(0.01)  # cancelled when the client's connection drops
        await asyncio.sleep(self.delay)
        return await self.record(server, session, envelope)


def start_digest_send(services: Services, readers: int) -> int:
    """`readers` confirmed readers r0@..r{n-1}@example.com on list news, and a digest send
    to them started; returns the send's id."""
    now = SystemClock().now()
    with services.engine.begin() as conn:
        for n in range(readers):
            subscriber_id = conn.execute(
                text(
                    "INSERT INTO subscribers (email, name, created_at, chain_head, chain_length) "
                    "VALUES (:e, '', :now, '', 0) RETURNING id"
                ),
                {"e": f"r{n}@example.com", "now": now},
            ).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO subscriptions (subscriber_id, list_id, status, topics, "
                    "created_at, updated_at, confirmed_at) VALUES (:s, (SELECT id FROM lists "
                    "WHERE slug = 'news'), 'confirmed', '[]', :now, :now, :now)"
                ),
                {"s": subscriber_id, "now": now},
            )
    with session_scope(services.engine) as session:
        upsert(
            session,
            ArticleInput(
                url="https://news.example.com/a",
                title="A story",
                published_at=now - timedelta(minutes=5),
            ),
            now,
        )
        digest = create(session, "news", {"name": "Workers", "schedule": "0 7 * * *"}, now)
        send = sends.start_send(session, services.settings, services.renderer, digest, now, now)
    assert send.total == readers
    assert send.id is not None
    return send.id


def start_worker(
    database_url: str,
    smtp_port: int,
    tmp_path: Path,
    from_address: str,
    lease_seconds: float,
    batch_size: int = BATCH,
) -> subprocess.Popen[bytes]:
    """`mailer worker` sending as `from_address`; its stderr goes to <tmp>/<from_address>.log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env.update(
        {
            "MAILER_DATABASE__URL": database_url,
            "MAILER_SECRET_KEY": SECRET,
            "MAILER_SMTP__TRANSPORT": "smtp",
            "MAILER_SMTP__HOST": "127.0.0.1",
            "MAILER_SMTP__PORT": str(smtp_port),
            "MAILER_MAIL__FROM_ADDRESS": from_address,
            "MAILER_SENDER__BATCH_SIZE": str(batch_size),
            "MAILER_SENDER__LEASE_SECONDS": str(lease_seconds),
            # A live worker renews its lease well before it runs out.
            "MAILER_SENDER__HEARTBEAT_SECONDS": str(lease_seconds / 4),
            "MAILER_SENDER__POLL_INTERVAL_SECONDS": "0.05",
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "mailer.cli", "worker"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / f"{from_address}.log").open("ab"),
    )


def logs(tmp_path: Path) -> str:
    return "\n".join(f"--- {log.name}\n{log.read_text()}" for log in tmp_path.glob("*.log"))


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)


def wait_until_done(
    services: Services,
    send_id: int,
    workers: list[subprocess.Popen[bytes]],
    tmp_path: Path,
    timeout: float,
) -> Progress:
    """Wait for the send to be `done`; fails early if it does not close once nothing is left."""
    deadline = time.monotonic() + timeout
    nothing_left_since: float | None = None
    while True:
        with session_scope(services.engine) as session:
            progress = sends.progress(session, send_id)[1]
        if progress.status == "done":
            return progress
        dead = [w.pid for w in workers if w.poll() is not None]
        assert not dead, f"workers {dead} exited; {progress}\n{logs(tmp_path)}"
        now = time.monotonic()
        if progress.pending:
            nothing_left_since = None
        elif nothing_left_since is None:
            nothing_left_since = now
        assert nothing_left_since is None or now - nothing_left_since < 5, (
            f"every row is settled, yet the send is never closed: {progress}\n{logs(tmp_path)}"
        )
        assert now < deadline, f"send not done: {progress}\n{logs(tmp_path)}"
        time.sleep(0.05)


def sender_of(received: Received) -> str:
    """The worker that delivered a message, by the From address it was configured with."""
    return str(received.message["From"].addresses[0].addr_spec)


def senders_by_reader(messages: list[Received]) -> dict[str, list[str]]:
    delivered: dict[str, list[str]] = {}
    for message in messages:
        for rcpt in message.rcpt_tos:
            delivered.setdefault(rcpt, []).append(sender_of(message))
    return delivered


def test_two_workers_on_postgresql_deliver_every_reader_exactly_once(
    services: Services, smtp: SmtpSink, database_url: str, tmp_path: Path
) -> None:
    readers = 400
    smtp.handler.handle_DATA = PacedHandler(smtp, delay=0.005).handle_DATA  # type: ignore[method-assign]
    send_id = start_digest_send(services, readers)

    workers = [
        start_worker(database_url, smtp.port, tmp_path, address, 300, SMALL_BATCH)
        for address in (WORKER_A, WORKER_B)
    ]
    try:
        progress = wait_until_done(services, send_id, workers, tmp_path, timeout=60)
    finally:
        stop(workers)

    counts = (progress.total, progress.sent, progress.failed, progress.pending)
    assert counts == (readers, readers, 0, 0), logs(tmp_path)
    received = Counter(rcpt for m in smtp.messages for rcpt in m.rcpt_tos)
    assert set(received) == {f"r{n}@example.com" for n in range(readers)}, "nobody is lost"
    delivered = senders_by_reader(smtp.messages)
    twice = {rcpt: delivered[rcpt] for rcpt, count in received.items() if count > 1}
    assert not twice, f"{len(twice)} readers got the send more than once: {twice}"
    by_worker = Counter(sender_of(m) for m in smtp.messages)
    assert set(by_worker) == {WORKER_A, WORKER_B}, f"both workers deliver: {by_worker}"


def test_a_batch_held_by_a_killed_worker_is_taken_over_by_the_other_worker(
    services: Services, smtp: SmtpSink, database_url: str, tmp_path: Path
) -> None:
    readers = 240
    handler = PacedHandler(smtp, delay=0.005, hold_at=readers // 4)
    smtp.handler.handle_DATA = handler.handle_DATA  # type: ignore[method-assign]
    send_id = start_digest_send(services, readers)

    worker_a = start_worker(database_url, smtp.port, tmp_path, WORKER_A, lease_seconds=2)
    try:
        deadline = time.monotonic() + 30
        while not handler.held.wait(timeout=0.05):
            assert worker_a.poll() is None, logs(tmp_path)
            assert time.monotonic() < deadline, f"{len(smtp.messages)} messages\n{logs(tmp_path)}"
        worker_a.send_signal(signal.SIGKILL)
        worker_a.wait(timeout=10)
    finally:
        stop([worker_a])
    before_kill = smtp.messages
    # A holds the batch on the wire and the next one, claimed and composed meanwhile. It
    # records outcomes per batch, so the batch on the wire is still `sending`, including
    # the messages it delivered before it was killed: those are the allowed repeats.
    with session_scope(services.engine) as session:
        claimed_by_a = set(
            session.scalars(
                text(
                    "SELECT s.email FROM outbox o JOIN subscribers s ON s.id = o.subscriber_id "
                    "WHERE o.send_id = :send AND o.status = 'sending'"
                ),
                {"send": send_id},
            )
        )
    assert 0 < len(claimed_by_a) <= 2 * BATCH, f"A was killed holding rows: {claimed_by_a}"
    handler.release.set()

    worker_b = start_worker(database_url, smtp.port, tmp_path, WORKER_B, lease_seconds=2)
    try:
        progress = wait_until_done(services, send_id, [worker_b], tmp_path, timeout=60)
    finally:
        stop([worker_b])

    counts = (progress.total, progress.sent, progress.failed, progress.pending)
    assert counts == (readers, readers, 0, 0), logs(tmp_path)
    everyone = {f"r{n}@example.com" for n in range(readers)}
    delivered = senders_by_reader(smtp.messages)
    assert set(delivered) == everyone, f"lost: {sorted(everyone - set(delivered))}"
    not_taken_over = {r for r in claimed_by_a if WORKER_B not in delivered[r]}
    assert not not_taken_over, f"B never delivered A's claimed rows {not_taken_over}"
    reached_before_kill = {rcpt for m in before_kill for rcpt in m.rcpt_tos}
    left_to_b = everyone - reached_before_kill
    assert all(WORKER_B in delivered[r] for r in left_to_b), "B delivers the rest"
    repeated = sum(len(senders) - 1 for senders in delivered.values())
    assert repeated <= BATCH, f"{repeated} repeats: more than the batch in flight"
    assert repeated <= len(claimed_by_a & reached_before_kill), "only A's batch repeats"
