"""Sending with real `mailer worker` processes: readers and a digest send set up in the
database, workers started with their settings in the environment, and stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text

from mailer.clock import SystemClock
from mailer.content.articles import ArticleInput, upsert
from mailer.content.digests import create
from mailer.db import session_scope
from mailer.delivery import sends
from mailer.services import Services
from tests.conftest import SECRET

BATCH = 20


def start_digest_send(services: Services, readers: int) -> int:
    """`readers` confirmed readers r0@..r{n-1}@example.com on list news, and a digest send
    to them started; returns the send's id."""
    now = SystemClock().now()
    with services.engine.begin() as conn:
        for n in range(readers):
            subscriber_id = conn.execute(
                text(
                    "INSERT INTO subscribers (email, email_key, name, created_at, chain_head, "
                    "chain_length) VALUES (:e, :e, '', :now, '', 0) RETURNING id"
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
    from_address: str = "news@example.org",
    lease_seconds: float = 2,
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
