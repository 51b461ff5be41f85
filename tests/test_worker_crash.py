"""A `mailer worker` killed with SIGKILL mid-send loses nobody when a worker starts again."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

from mailer.db import session_scope
from mailer.delivery import sends
from mailer.services import Services
from tests.conftest import SmtpSink
from tests.workers import BATCH, logs, start_digest_send, start_worker

pytestmark = pytest.mark.both_databases
"""Leases and batch claims (SKIP LOCKED) across processes: both databases."""

READERS = 240


class SlowHandler:
    """Accepts every message after a short pause, so a send takes long enough to kill."""

    def __init__(self, sink: SmtpSink) -> None:
        self.record = sink.handler.handle_DATA

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(0.01)
        return await self.record(server, session, envelope)


def test_a_killed_worker_loses_nobody_and_repeats_only_its_batch_in_flight(
    services: Services, smtp: SmtpSink, database_url: str, tmp_path: Path
) -> None:
    smtp.handler.handle_DATA = SlowHandler(smtp).handle_DATA  # type: ignore[method-assign]
    send_id = start_digest_send(services, READERS)

    worker = start_worker(database_url, smtp.port, tmp_path)
    deadline = time.monotonic() + 60
    while len(smtp.messages) < READERS // 3:
        assert time.monotonic() < deadline and worker.poll() is None, logs(tmp_path)
        time.sleep(0.01)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    at_crash = len(smtp.messages)
    assert at_crash < READERS, "killed mid-send"

    restarted = start_worker(database_url, smtp.port, tmp_path)
    try:
        deadline = time.monotonic() + 90
        while True:
            with session_scope(services.engine) as session:
                progress = sends.progress(session, send_id)[1]
            if progress.status == "done":
                break
            assert time.monotonic() < deadline, progress
            time.sleep(0.1)
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=20)

    assert (progress.sent, progress.failed, progress.pending) == (READERS, 0, 0)
    received = Counter(rcpt for m in smtp.messages for rcpt in m.rcpt_tos)
    assert set(received) == {f"r{n}@example.com" for n in range(READERS)}, "nobody is lost"
    repeated = sum(count - 1 for count in received.values())
    assert repeated <= BATCH, f"{repeated} repeats: more than the batch in flight"
