"""Burst against POST /subscribe from one IP: do the limits hold and the database not fill?

Starts `mailer serve` as an operator would (a fresh directory: SQLite and a Maildir under
./var), fires wrk at /subscribe from loopback with a new address each request, then prints
requests, statuses by code, p99 latency, and the rows in subscribers, confirmations and
outbox before and after. Fails (exit 1) when more rows were written than the per-IP limit
allows: `rate_limit_per_ip` for every started `rate_limit_per_ip_window_seconds`.

    .venv/bin/python bench/subscribe_burst.py [--duration 10] [--connections 200]
        [--threads 2] [--limit 120] [--window 60]
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

MAILER = [str(Path(sys.executable).with_name("mailer"))]
TABLES = ("subscribers", "confirmations", "outbox")

# Each wrk thread has its own Lua state: `setup` (in the main state) numbers the threads,
# `response` counts statuses per thread, and `done` adds them up and prints one line each.
WRK_SCRIPT = r"""
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  counter = 0
  statuses = {}
  prefix = "burst-" .. RUN .. "-" .. tid .. "-"
end
function request()
  counter = counter + 1
  local body = '{"email":"' .. prefix .. counter .. '@example.com"}'
  return wrk.format("POST", "/subscribe", {["Content-Type"] = "application/json"}, body)
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + count
    end
  end
  for status, count in pairs(totals) do
    io.write(string.format("STATUS %d %d\n", status, count))
  end
  io.write(string.format("REQUESTS %d\n", summary.requests))
  io.write(string.format("ERRORS %d\n", summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
  io.write(string.format("P50_US %d\n", latency:percentile(50)))
  io.write(string.format("P99_US %d\n", latency:percentile(99)))
  io.write(string.format("DURATION_US %d\n", summary.duration))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def row_counts(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as connection:
        return {
            table: int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in TABLES
        }


def wait_until_up(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"mailer serve exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"mailer serve did not come up:\n{log.read_text()}")


def parse_wrk(output: str) -> tuple[dict[int, int], dict[str, int]]:
    statuses: dict[int, int] = {}
    figures: dict[str, int] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "STATUS":
            statuses[int(parts[1])] = int(parts[2])
        elif len(parts) == 2 and parts[0] in {"REQUESTS", "ERRORS", "P50_US", "P99_US"}:
            figures[parts[0]] = int(parts[1])
        elif len(parts) == 2 and parts[0] == "DURATION_US":
            figures["DURATION_US"] = int(parts[1])
    return statuses, figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of burst")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=120, help="signups per IP per window")
    parser.add_argument("--window", type=float, default=60.0, help="the window, seconds")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mailer-burst-") as directory:
        workdir = Path(directory)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
        env.update(
            MAILER_SIGNUP__RATE_LIMIT_PER_IP=str(args.limit),
            MAILER_SIGNUP__RATE_LIMIT_PER_IP_WINDOW_SECONDS=str(args.window),
            MAILER_LOG_LEVEL="WARNING",
        )
        log = workdir / "serve.log"
        with log.open("wb") as log_file:
            server = subprocess.Popen(
                [*MAILER, "serve", "--port", str(port)],
                cwd=workdir,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until_up(base, server, log)
            database = workdir / "var" / "mailer.db"
            before = row_counts(database)
            script = workdir / "burst.lua"
            script.write_text(f'RUN = "{uuid.uuid4().hex[:8]}"\n' + WRK_SCRIPT)
            started = time.monotonic()
            wrk = subprocess.run(
                [
                    "wrk",
                    f"-t{args.threads}",
                    f"-c{args.connections}",
                    f"-d{args.duration}s",
                    "--timeout",
                    "10s",
                    "-s",
                    str(script),
                    base,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            elapsed = time.monotonic() - started
            time.sleep(1)  # let the last signups commit
            after = row_counts(database)
        finally:
            server.terminate()
            server.wait(timeout=30)

    statuses, figures = parse_wrk(wrk.stdout)
    windows = max(1, math.ceil(elapsed / args.window))
    allowed = args.limit * windows
    print(
        f"burst: {args.duration} s, {args.connections} connections, {args.threads} wrk threads, "
        f"one IP; limit {args.limit} signups per {args.window:g} s ({windows} window(s): "
        f"at most {allowed} written)"
    )
    print(f"requests: {figures.get('REQUESTS', 0)} ({figures.get('ERRORS', 0)} socket errors)")
    print(f"requests/s: {figures.get('REQUESTS', 0) / elapsed:.0f}")
    print("statuses: " + ", ".join(f"{code}: {count}" for code, count in sorted(statuses.items())))
    print(
        f"latency: p50 {figures.get('P50_US', 0) / 1000:.1f} ms, "
        f"p99 {figures.get('P99_US', 0) / 1000:.1f} ms"
    )
    print(f"{'table':<14}{'before':>8}{'after':>8}{'new':>8}")
    for table in TABLES:
        print(f"{table:<14}{before[table]:>8}{after[table]:>8}{after[table] - before[table]:>8}")
    over = {t: after[t] - before[t] for t in TABLES if after[t] - before[t] > allowed}
    if over or statuses.get(202, 0) > allowed:
        print(f"LIMIT BROKEN: more than {allowed} written: {over}, 202s: {statuses.get(202)}")
        return 1
    print(f"limits held: {statuses.get(202, 0)} accepted, at most {allowed} allowed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
