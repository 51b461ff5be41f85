"""Scale benchmark (PostgreSQL): the time to start a send to 1,000,000 subscribers, and a
`mailer worker`'s peak memory delivering it against delivering a 10,000-recipient send.

    .venv/bin/python bench/scale.py [--count 1000000] [--small 10000] [--skip-drain]

Prints: seconds for sends.start_send (one INSERT ... SELECT of the outbox rows; target
under 30 s), then each worker's peak RSS (VmHWM) with its rate, and the ratio large / small
(target: within 20%). Progress of the long delivery goes to stderr every 30 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from send import (
    Drained,
    bench_settings,
    drain,
    ensure_postfix_tools,
    free_port,
    scratch_database,
    start_digest_send,
    start_sink,
)

START_TARGET_SECONDS = 30.0
RSS_TARGET_RATIO = 1.2


def deliver(label: str, count: int, args: argparse.Namespace, port: int, workdir: Path) -> Drained:
    """A fresh database with a send to `count` subscribers, drained by one worker."""
    with scratch_database(f"mailer_bench_scale_{os.getpid()}_{label}") as url:
        settings = bench_settings(url, workdir, port, args.concurrency, args.batch)
        started = start_digest_send(settings, count, "postgresql")
        print(f"  ... {label}: {count} queued; one worker delivering", file=sys.stderr, flush=True)
        return drain(settings, started.send_id, 1, workdir)


def worker_line(label: str, count: int, drained: Drained) -> str:
    peak_mb = drained.peak_rss_kb[0] / 1024
    return (
        f"  worker peak RSS, {label} send ({count} recipients): {peak_mb:6.1f} MB   "
        f"({drained.sent / drained.seconds:.0f} msg/s, sent {drained.sent}, failed "
        f"{drained.failed}, {drained.seconds:.0f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000, help="recipients of the send")
    parser.add_argument("--small", type=int, default=10_000, help="recipients of the small send")
    parser.add_argument(
        "--skip-drain", action="store_true", help="only time the start of the large send"
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    if not args.skip_drain:
        ensure_postfix_tools()
    port = free_port()
    sink = start_sink(port) if not args.skip_drain else None
    workdir = Path(tempfile.mkdtemp(prefix="mailer-bench-scale-"))
    try:
        print(f"scale on PostgreSQL; {os.cpu_count()} cores", flush=True)
        with scratch_database(f"mailer_bench_scale_{os.getpid()}_large") as url:
            settings = bench_settings(url, workdir, port, args.concurrency, args.batch)
            print(f"  ... filling {args.count} subscribers", file=sys.stderr, flush=True)
            started = start_digest_send(settings, args.count, "postgresql")
            verdict = "met" if started.start_seconds < START_TARGET_SECONDS else "MISSED"
            print(
                f"  start a send to {started.total} subscribers: {started.start_seconds:6.2f} s"
                f"   (target under {START_TARGET_SECONDS:.0f} s: {verdict}; "
                f"filling them took {started.fill_seconds:.0f} s)",
                flush=True,
            )
            if args.skip_drain:
                return
            small = deliver("small", args.small, args, port, workdir)
            print(worker_line("small", args.small, small), flush=True)
            print(
                f"  ... large: one worker delivering {started.total}", file=sys.stderr, flush=True
            )
            large = drain(settings, started.send_id, 1, workdir)
            print(worker_line("large", args.count, large))
        ratio = large.peak_rss_kb[0] / small.peak_rss_kb[0]
        verdict = "met" if ratio <= RSS_TARGET_RATIO else "MISSED"
        print(
            f"  peak RSS large / small: {ratio:.2f}   (target at most {RSS_TARGET_RATIO:.2f}: "
            f"{verdict})"
        )
    finally:
        if sink is not None:
            sink.terminate()
            sink.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
