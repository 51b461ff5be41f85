"""Several `mailer worker` processes on one PostgreSQL database share a send's outbox.

Each worker is a real subprocess with its own From address, so every message the SMTP
sink records says which worker delivered it.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session
from sqlalchemy import text

from mailer.db import session_scope
from mailer.delivery import sends
from mailer.delivery.sends import Progress
from mailer.services import Services
from tests.conftest import Received, SmtpSink
from tests.workers import BATCH, logs, start_digest_send, start_worker, stop

# Only PostgreSQL claims with FOR UPDATE SKIP LOCKED; SQLite serves one worker at a time.
pytestmark = pytest.mark.parametrize("db_kind", ["postgresql"])

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
