"""A `mailer worker` killed with SIGKILL mid-send loses nobody when a worker starts again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session
from sqlalchemy import text

from mailer.clock import SystemClock
from mailer.content.articles import ArticleInput, upsert
from mailer.content.digests import create
from mailer.db import session_scope
from mailer.delivery import sends
from mailer.services import Services
from tests.conftest import SECRET, SmtpSink

READERS = 240
BATCH = 20


class SlowHandler:
    """Accepts every message after a short pause, so a send takes long enough to kill."""

    def __init__(self, sink: SmtpSink) -> None:
        self.record = sink.handler.handle_DATA

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(0.01)
        return await self.record(server, session, envelope)


def start_worker(database_url: str, smtp_port: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env.update(
        {
            "MAILER_DATABASE__URL": database_url,
            "MAILER_SECRET_KEY": SECRET,
            "MAILER_SMTP__TRANSPORT": "smtp",
            "MAILER_SMTP__HOST": "127.0.0.1",
            "MAILER_SMTP__PORT": str(smtp_port),
            "MAILER_SENDER__BATCH_SIZE": str(BATCH),
            "MAILER_SENDER__LEASE_SECONDS": "2",
            "MAILER_SENDER__HEARTBEAT_SECONDS": "0.5",
            "MAILER_SENDER__POLL_INTERVAL_SECONDS": "0.05",
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "mailer.cli", "worker"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "worker.log").open("ab"),
    )


def test_a_killed_worker_loses_nobody_and_repeats_only_its_batch_in_flight(
    services: Services, smtp: SmtpSink, database_url: str, tmp_path: Path
) -> None:
    smtp.handler.handle_DATA = SlowHandler(smtp).handle_DATA  # type: ignore[method-assign]
    now = SystemClock().now()
    with services.engine.begin() as conn:
        for n in range(READERS):
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
        digest = create(session, "news", {"name": "Crash", "schedule": "0 7 * * *"}, now)
        send = sends.start_send(session, services.settings, services.renderer, digest, now, now)
    assert send.total == READERS

    worker = start_worker(database_url, smtp.port, tmp_path)
    deadline = time.monotonic() + 60
    while len(smtp.messages) < READERS // 3:
        log = tmp_path / "worker.log"
        assert time.monotonic() < deadline and worker.poll() is None, log.read_text()
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
                progress = sends.progress(session, send.id or 0)[1]
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
