"""Sending benchmark: one digest to N subscribers through mailer's sender, against a C load
generator (postfix's smtp-source) feeding the same sink (smtp-sink) at the same concurrency.

    .venv/bin/python bench/send.py [--count 100000] [--concurrency 4] [--backend sqlite]

Prints: time to start the send (one INSERT ... SELECT), messages per second delivered
(per-recipient composition and bookkeeping included), CPU seconds per 1,000 messages and
peak RSS of the sending process, and beside them smtp-source's rate and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import text
from sqlmodel import col, select

PG_ADMIN = os.environ.get("MAILER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_postfix_tools() -> None:
    if shutil.which("smtp-sink") and shutil.which("smtp-source"):
        return
    if os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "postfix"], check=True, env=env)
    if not (shutil.which("smtp-sink") and shutil.which("smtp-source")):
        sys.exit("smtp-sink and smtp-source are missing: apt-get install postfix")


def start_sink(port: int) -> subprocess.Popen[bytes]:
    args = ["smtp-sink", "-u", "nobody", f"127.0.0.1:{port}", "1024"]
    sink = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return sink
        except OSError:
            if time.monotonic() > deadline:
                sys.exit("smtp-sink did not start")
            time.sleep(0.05)


def smtp_source_rate(port: int, count: int, concurrency: int, size: int) -> float:
    """smtp-source's messages per second for `count` messages of `size` bytes."""
    started = time.perf_counter()
    subprocess.run(
        [
            "smtp-source",
            "-s",
            str(concurrency),
            "-m",
            str(count),
            "-l",
            str(size),
            "-f",
            "news@example.org",
            "-t",
            "reader@example.com",
            f"127.0.0.1:{port}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return count / (time.perf_counter() - started)


def fill_subscribers(engine_url: str, count: int, backend: str) -> None:
    """N confirmed subscribers of list `news`, made by the database itself."""
    from sqlalchemy import create_engine

    from mailer.db import normalize_url

    engine = create_engine(normalize_url(engine_url))
    now = datetime.now(UTC).isoformat()
    if backend == "postgresql":
        numbers = f"SELECT generate_series(1, {count}) AS n"
    else:
        numbers = (
            f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq "
            f"WHERE n < {count}) SELECT n FROM seq"
        )
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO subscribers (email, name, created_at, chain_head, chain_length) "
                f"SELECT 'reader' || n || '@example.com', '', :now, '', 0 FROM ({numbers}) AS s"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO subscriptions (subscriber_id, list_id, status, topics, created_at, "
                "updated_at, confirmed_at) SELECT id, (SELECT id FROM lists WHERE slug = 'news'), "
                "'confirmed', '[]', :now, :now, :now FROM subscribers"
            ),
            {"now": now},
        )
    engine.dispose()


def run(args: argparse.Namespace, workdir: Path, sink_port: int) -> dict[str, float]:
    from mailer import config, db
    from mailer.clock import SystemClock
    from mailer.content.articles import ArticleInput, upsert
    from mailer.content.digests import create
    from mailer.db import session_scope
    from mailer.delivery import sends
    from mailer.models import OutboxMessage
    from mailer.services import build

    pg_name = f"mailer_bench_send_{os.getpid()}"
    if args.backend == "postgresql":
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}"')
            conn.execute(f'CREATE DATABASE "{pg_name}"')
        url = PG_ADMIN.rsplit("/", 1)[0] + "/" + pg_name
    else:
        url = f"sqlite:///{workdir / 'mailer.db'}"
    settings = config.load(
        data_dir=str(workdir),
        secret_key="bench-" + "x" * 40,
        log_level="WARNING",
        database={"url": url},
        smtp={"transport": "smtp", "host": "127.0.0.1", "port": sink_port},
        mail={"from_address": "news@example.org", "postal_address": "1 Press Street"},
        sender={
            "concurrency": args.concurrency,
            "batch_size": args.batch,
            "poll_interval_seconds": 0.01,
        },
    )
    try:
        services = build(settings)
        db.upgrade(services.engine)
        fill_subscribers(url, args.count, args.backend)
        now = SystemClock().now()
        with session_scope(services.engine) as session:
            for n in range(8):
                upsert(
                    session,
                    ArticleInput(
                        url=f"https://news.example.com/{n}",
                        title=f"Story number {n}",
                        summary="A summary of what happened, two sentences long. " * 2,
                        topics=["world"],
                        published_at=now - timedelta(minutes=n + 1),
                    ),
                    now,
                )
            digest = create(session, "news", {"name": "Bench", "schedule": "0 7 * * *"}, now)
        started = time.perf_counter()
        with session_scope(services.engine) as session:
            send = sends.start_send(session, settings, services.renderer, digest, now, now)
        start_seconds = time.perf_counter() - started
        assert send.total == args.count, send

        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()

        async def drain() -> None:
            while await services.sender.run_once():
                pass
            await services.transport.close()

        asyncio.run(drain())
        seconds = time.perf_counter() - started
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        with session_scope(services.engine) as session:
            counts = sends.progress(session, send.id or 0)[1]
            sample = session.exec(
                select(OutboxMessage).where(col(OutboxMessage.send_id) == send.id).limit(1)
            ).one()
            size = len(services.sender.composer.compose(session, sample, now).data)
        services.engine.dispose()
    finally:
        if args.backend == "postgresql":
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return {
        "start_seconds": start_seconds,
        "sent": counts.sent,
        "failed": counts.failed,
        "rate": counts.sent / seconds,
        "cpu_per_1000": cpu / max(counts.sent, 1) * 1000,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "size": size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    ensure_postfix_tools()
    port = free_port()
    sink = start_sink(port)
    workdir = Path(tempfile.mkdtemp(prefix="mailer-bench-send-"))
    try:
        figures = run(args, workdir, port)
        reference = smtp_source_rate(port, args.count, args.concurrency, figures["size"])
    finally:
        sink.terminate()
        sink.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"one digest to {args.count} subscribers ({args.backend}), concurrency "
        f"{args.concurrency}, messages of {figures['size']} bytes; {os.cpu_count()} cores"
    )
    print(f"  start the send (outbox rows created): {figures['start_seconds']:.2f} s")
    print(
        f"  mailer:      {figures['rate']:9.0f} msg/s   sent {figures['sent']:.0f}, failed "
        f"{figures['failed']:.0f}; {figures['cpu_per_1000']:.2f} CPU s per 1,000; peak RSS "
        f"{figures['peak_rss_mb']:.0f} MB"
    )
    print(f"  smtp-source: {reference:9.0f} msg/s   (same sink, same concurrency, same size)")
    print(f"  ratio:       {figures['rate'] / reference:9.1%}")


if __name__ == "__main__":
    sys.exit(main())
