"""Sending benchmark: one digest to N subscribers delivered by `mailer worker` processes,
against a C load generator (postfix's smtp-source) feeding the same sink (smtp-sink) at the
same concurrency.

    .venv/bin/python bench/send.py [--count 100000] [--concurrency 4] [--backend sqlite]
    .venv/bin/python bench/send.py --backend postgresql --workers 2
    .venv/bin/python bench/send.py --backend postgresql --compare-workers
    .venv/bin/python bench/send.py --count 5000 --dkim     # every message DKIM-signed (RSA 2048)

Prints: time to start the send (one INSERT ... SELECT), messages per second delivered by the
workers (per-recipient composition and bookkeeping included), their CPU seconds per 1,000
messages and the largest worker's peak RSS, and beside them smtp-source's rate and the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from sqlalchemy import create_engine, text
from sqlmodel import Session, col, select

if TYPE_CHECKING:
    from mailer.config import Settings

PG_ADMIN = os.environ.get("MAILER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
POLL_SECONDS = 0.2
REPORT_SECONDS = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


@contextmanager
def scratch_database(name: str) -> Iterator[str]:
    """A new, empty PostgreSQL database `name` (its URL), dropped on the way out."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_settings(
    url: str, workdir: Path, sink_port: int, concurrency: int, batch: int, dkim: bool = False
) -> Settings:
    """The settings shared by this process (which starts the send) and the workers; with
    `dkim`, a new RSA 2048 key in `workdir` signs every message."""
    from mailer import config
    from mailer.delivery.dkim import generate

    dkim_settings = {}
    if dkim:
        key_path = workdir / "dkim.pem"
        key_path.write_bytes(generate("rsa").private_pem)
        dkim_settings = {"domain": "example.org", "selector": "bench", "private_key_path": key_path}
    return config.load(
        data_dir=str(workdir),
        secret_key="bench-" + "x" * 40,
        log_level="WARNING",
        database={"url": url},
        smtp={"transport": "smtp", "host": "127.0.0.1", "port": sink_port},
        mail={"from_address": "news@example.org", "postal_address": "1 Press Street"},
        sender={
            "concurrency": concurrency,
            "batch_size": batch,
            "poll_interval_seconds": 0.01,
        },
        dkim={key: str(value) for key, value in dkim_settings.items()},
    )


def fill_subscribers(engine_url: str, count: int, backend: str) -> None:
    """N confirmed subscribers of list `news`, made by the database itself."""
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
                "INSERT INTO subscribers (email, email_key, name, created_at, chain_head, "
                "chain_length) "
                f"SELECT 'reader' || n || '@example.com', 'reader' || n || '@example.com', '', "
                f":now, '', 0 FROM ({numbers}) AS s"
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


@dataclass
class Started:
    send_id: int
    total: int
    fill_seconds: float
    """Wall time of making the subscribers (and, on PostgreSQL, analyzing their tables)."""
    start_seconds: float
    """Wall time of sends.start_send: the outbox rows' INSERT ... SELECT and the rest."""


def start_digest_send(settings: Settings, count: int, backend: str) -> Started:
    """Migrate, fill `count` subscribers, add eight articles and a digest, start its send."""
    from mailer import db
    from mailer.clock import SystemClock
    from mailer.content.articles import ArticleInput, upsert
    from mailer.content.digests import create
    from mailer.db import session_scope
    from mailer.delivery import sends
    from mailer.delivery.render import MailRenderer
    from mailer.models import Digest

    engine = db.make_engine(settings)
    try:
        db.upgrade(engine)
        filling = time.perf_counter()
        fill_subscribers(settings.database_url, count, backend)
        if backend == "postgresql":
            # A list that grew over time has planner statistics (autovacuum keeps them);
            # a table filled a moment ago has none.
            with engine.begin() as conn:
                conn.execute(text("ANALYZE subscribers, subscriptions"))
        fill_seconds = time.perf_counter() - filling
        now = SystemClock().now()
        with session_scope(engine) as session:
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
        renderer = MailRenderer(settings.email_template_dirs)
        started = time.perf_counter()
        with session_scope(engine) as session:
            digest = session.get(Digest, digest.id)
            assert digest is not None
            send = sends.start_send(session, settings, renderer, digest, now, now)
        start_seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    assert send.id is not None and send.total == count, send
    return Started(send.id, send.total, fill_seconds, start_seconds)


def message_size(settings: Settings, send_id: int) -> int:
    """Bytes of one message of the send, composed as the workers compose it."""
    from mailer.clock import SystemClock
    from mailer.db import session_scope
    from mailer.models import OutboxMessage
    from mailer.services import build

    services = build(settings)
    try:
        with session_scope(services.engine) as session:
            sample = session.exec(
                select(OutboxMessage).where(col(OutboxMessage.send_id) == send_id).limit(1)
            ).one()
            now = SystemClock().now()
            return len(services.sender.composer.compose(session, sample, now).data)
    finally:
        services.engine.dispose()


def worker_env(settings: Settings) -> dict[str, str]:
    """This process's environment without MAILER_* variables, plus the worker's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env.update(
        {
            "MAILER_DATABASE__URL": settings.database_url,
            "MAILER_SECRET_KEY": settings.secret_key.get_secret_value(),
            "MAILER_SMTP__TRANSPORT": "smtp",
            "MAILER_SMTP__HOST": settings.smtp.host,
            "MAILER_SMTP__PORT": str(settings.smtp.port),
            "MAILER_SENDER__CONCURRENCY": str(settings.sender.concurrency),
            "MAILER_SMTP__CONNECTIONS": str(settings.sender.concurrency),
            "MAILER_SENDER__BATCH_SIZE": str(settings.sender.batch_size),
            "MAILER_SENDER__POLL_INTERVAL_SECONDS": str(settings.sender.poll_interval_seconds),
            "MAILER_MAIL__FROM_ADDRESS": settings.mail.from_address,
            # The footer carries it: without it the workers' messages would be shorter than
            # the one measured for smtp-source.
            "MAILER_MAIL__POSTAL_ADDRESS": settings.mail.postal_address,
            "MAILER_LOG_LEVEL": "WARNING",
        }
    )
    if settings.dkim.domain:
        env["MAILER_DKIM__DOMAIN"] = settings.dkim.domain
        env["MAILER_DKIM__SELECTOR"] = settings.dkim.selector
        env["MAILER_DKIM__PRIVATE_KEY_PATH"] = settings.dkim.private_key_path
    return env


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log_path: Path

    def cpu_seconds(self) -> float:
        """User + system CPU of the process (all its threads) and of its waited-for children."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        # Fields 14-17 of proc(5) (utime, stime, cutime, cstime); [0] here is field 3.
        return sum(int(tick) for tick in fields[11:15]) / CLOCK_TICKS

    def peak_rss_kb(self) -> int:
        """VmHWM: the most resident memory the process has had so far."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmHWM for worker {self.process.pid}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_workers(settings: Settings, count: int, workdir: Path) -> list[Worker]:
    """`count` `mailer worker` processes, each logging to <workdir>/worker-<n>.log."""
    env = worker_env(settings)
    workers = []
    for n in range(count):
        log_path = workdir / f"worker-{n}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "mailer.cli", "worker"],
                cwd=workdir,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        workers.append(Worker(process, log_path))
    return workers


def stop_workers(workers: list[Worker]) -> None:
    """SIGTERM each worker (they finish their batch and close), then wait for all."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


@dataclass
class Drained:
    seconds: float
    """From starting the workers until the send was done."""
    sent: int
    failed: int
    cpu_seconds: float
    """All workers' user + system CPU, their start-up included."""
    peak_rss_kb: list[int]
    """Each worker's VmHWM just before it was stopped."""


def drain(settings: Settings, send_id: int, workers: int, workdir: Path) -> Drained:
    """Run `workers` `mailer worker` processes until the send is done; stop them.

    The send's status is polled every 0.2 s with one primary-key read (what
    sends.progress reports as status, without its count over the outbox, which would
    compete with the workers for CPU). Every 30 s sends.progress is printed to stderr;
    a send that made no progress between two reports is given up.
    """
    from mailer.db import normalize_url
    from mailer.delivery import sends

    # A plain engine: mailer's SQLite engine takes the write lock for every transaction.
    engine = create_engine(normalize_url(settings.database_url))
    status_query = text("SELECT status FROM sends WHERE id = :id")
    running: list[Worker] = []
    try:
        started = time.perf_counter()
        running = start_workers(settings, workers, workdir)
        next_report = started + REPORT_SECONDS
        last_handled = -1
        while True:
            time.sleep(POLL_SECONDS)
            for worker in running:
                if worker.process.poll() is not None:
                    sys.exit(
                        f"worker {worker.process.pid} exited with {worker.process.returncode}:\n"
                        + worker.log_tail()
                    )
            with engine.connect() as conn:
                status = conn.execute(status_query, {"id": send_id}).scalar_one()
            if status == "done":
                seconds = time.perf_counter() - started
                break
            if time.perf_counter() >= next_report:
                next_report += REPORT_SECONDS
                with Session(engine) as session:
                    counts = sends.progress(session, send_id)[1]
                handled = counts.sent + counts.failed + counts.dropped
                elapsed = time.perf_counter() - started
                print(
                    f"  ... {elapsed:6.0f} s: {handled} of {counts.total} handled "
                    f"({handled / elapsed:.0f} msg/s), {counts.pending} pending",
                    file=sys.stderr,
                    flush=True,
                )
                if handled == last_handled:
                    sys.exit(f"the send made no progress in {REPORT_SECONDS:.0f} s; giving up")
                last_handled = handled
        cpu = sum(worker.cpu_seconds() for worker in running)
        peaks = [worker.peak_rss_kb() for worker in running]
    finally:
        stop_workers(running)
    with Session(engine) as session:
        counts = sends.progress(session, send_id)[1]
    engine.dispose()
    return Drained(seconds, counts.sent, counts.failed, cpu, peaks)


def run(args: argparse.Namespace, sink_port: int, workers: int) -> dict[str, float]:
    """One send to args.count subscribers on a fresh database, drained by `workers` workers."""
    workdir = Path(tempfile.mkdtemp(prefix="mailer-bench-send-"))
    try:
        with database(args.backend, workdir, f"mailer_bench_send_{os.getpid()}") as url:
            settings = bench_settings(
                url, workdir, sink_port, args.concurrency, args.batch, args.dkim
            )
            started = start_digest_send(settings, args.count, args.backend)
            drained = drain(settings, started.send_id, workers, workdir)
            size = message_size(settings, started.send_id)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "start_seconds": started.start_seconds,
        "sent": drained.sent,
        "failed": drained.failed,
        "rate": drained.sent / drained.seconds,
        "cpu_per_1000": drained.cpu_seconds / max(drained.sent, 1) * 1000,
        "peak_rss_mb": max(drained.peak_rss_kb) / 1024,
        "size": size,
    }


@contextmanager
def database(backend: str, workdir: Path, pg_name: str) -> Iterator[str]:
    """The URL of a fresh database: a scratch PostgreSQL database or a SQLite file."""
    if backend == "postgresql":
        with scratch_database(pg_name) as url:
            yield url
    else:
        yield f"sqlite:///{workdir / 'mailer.db'}"


def mailer_line(figures: dict[str, float], label: str) -> str:
    return (
        f"  {label + ':':<13}{figures['rate']:9.0f} msg/s   sent {figures['sent']:.0f}, failed "
        f"{figures['failed']:.0f}; {figures['cpu_per_1000']:.2f} CPU s per 1,000; peak RSS "
        f"{figures['peak_rss_mb']:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=4, help="SMTP connections per worker")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--workers", type=int, default=1, help="mailer worker processes")
    parser.add_argument("--dkim", action="store_true", help="sign every message (RSA 2048)")
    parser.add_argument(
        "--compare-workers",
        action="store_true",
        help="PostgreSQL: the same send with 1 worker, then with 2 (fresh database each)",
    )
    args = parser.parse_args()
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.compare_workers and args.workers != 1:
        parser.error("--compare-workers runs 1 and then 2 workers; leave out --workers")
    if args.backend == "sqlite" and (args.workers > 1 or args.compare_workers):
        sys.exit(
            "SQLite has one writer, so mailer sends from a single process on SQLite: "
            "use --backend postgresql for more than one worker"
        )
    ensure_postfix_tools()
    port = free_port()
    sink = start_sink(port)
    try:
        runs = [1, 2] if args.compare_workers else [args.workers]
        results = {workers: run(args, port, workers) for workers in runs}
        size = int(results[runs[0]]["size"])
        reference = smtp_source_rate(port, args.count, args.concurrency, size)
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    per_worker = " per worker" if args.compare_workers or args.workers > 1 else ""
    print(
        f"one digest to {args.count} subscribers ({args.backend}), concurrency "
        f"{args.concurrency}{per_worker}, messages of {size} bytes; {os.cpu_count()} cores"
        + ("; DKIM-signed (RSA 2048)" if args.dkim else "")
    )
    for workers, figures in results.items():
        label = "" if len(results) == 1 else f", {workers} worker{'s' * (workers > 1)}"
        print(f"  start the send (outbox rows created{label}): {figures['start_seconds']:.2f} s")
    if args.compare_workers:
        print(mailer_line(results[1], "1 worker"))
        print(mailer_line(results[2], "2 workers"))
        print(f"  smtp-source: {reference:9.0f} msg/s   (same sink, same concurrency, same size)")
        print(
            f"  ratio:       {results[1]['rate'] / reference:9.1%}   (1 worker),"
            f" {results[2]['rate'] / reference:.1%} (2 workers)"
        )
        speedup = results[2]["rate"] / results[1]["rate"]
        print(f"  2 workers vs 1: {speedup:.2f}x   (target: at least 1.7x)")
        return
    figures = results[args.workers]
    label = "mailer" if args.workers == 1 else f"{args.workers} workers"
    print(mailer_line(figures, label))
    print(f"  smtp-source: {reference:9.0f} msg/s   (same sink, same concurrency, same size)")
    print(f"  ratio:       {figures['rate'] / reference:9.1%}")


if __name__ == "__main__":
    sys.exit(main())
