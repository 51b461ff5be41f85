"""Signup benchmark: requests/s and latency of POST /subscribe beside a bare endpoint.

Starts mailer's app under uvicorn (one process, as `mailer serve` runs it, sender off so
only the HTTP path is measured) with an extra bare FastAPI endpoint `POST /bench/bare`
that parses the same JSON and answers 202. wrk drives both with unique addresses per
request; the bare endpoint is the reference measured in the same run. Prints a table.

    .venv/bin/python bench/signup.py [--backend sqlite|postgresql|both] [--duration 10]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
from fastapi import Request
from fastapi.responses import JSONResponse

PG_ADMIN = os.environ.get("MAILER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

WRK_SCRIPT = r"""
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  counter = 0
  prefix = "bench-" .. RUN .. "-" .. tid .. "-"
end
function request()
  counter = counter + 1
  local body = '{"email":"' .. prefix .. counter .. '@example.com","form":"default"}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors.status, errors.connect + errors.read + errors.write + errors.timeout))
end
"""


def serve(database_url: str, data_dir: str, port: int) -> None:
    """Run the app with the bare reference endpoint (the child process)."""
    import uvicorn

    from mailer import config, db
    from mailer.api.app import create_app
    from mailer.services import build

    settings = config.load(
        data_dir=data_dir,
        secret_key="bench-secret-" + "x" * 40,
        log_level="WARNING",
        database={"url": database_url},
        smtp={"transport": "maildir"},
        signup={"rate_limit_per_ip": 10**9, "rate_limit_per_address": 10**9},
    )
    services = build(settings)
    db.upgrade(services.engine)
    app = create_app(services, run_sender=False, run_scheduler=False)

    @app.post("/bench/bare", include_in_schema=False)
    async def bare(request: Request) -> JSONResponse:
        await request.json()
        return JSONResponse({"status": "pending"}, status_code=202)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
        found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is missing: install it with `apt-get install wrk`")
    return found


def run_wrk(wrk: str, url: str, run_id: str, script: Path, args: argparse.Namespace) -> dict:
    script.write_text(f'RUN = "{run_id}"\n' + WRK_SCRIPT)
    out = subprocess.run(
        [wrk, "-t2", f"-c{args.connections}", f"-d{args.duration}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"RESULT (.*)", out)
    if not match:
        sys.exit(f"wrk printed no result:\n{out}")
    figures = {k: int(v) for k, v in (pair.split("=") for pair in match.group(1).split())}
    figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
    return figures


def subscriber_count(database_url: str) -> int:
    from sqlalchemy import text

    from mailer import config, db

    engine = db.make_engine(config.load(database={"url": database_url}, secret_key="x" * 40))
    with engine.connect() as connection:
        count = int(connection.execute(text("SELECT count(*) FROM subscribers")).scalar_one())
    engine.dispose()
    return count


def bench_backend(backend: str, wrk: str, args: argparse.Namespace) -> list[dict]:
    workdir = Path(tempfile.mkdtemp(prefix="mailer-bench-"))
    pg_name = f"mailer_bench_{os.getpid()}"
    if backend == "sqlite":
        database_url = f"sqlite:///{workdir / 'mailer.db'}"
    else:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}"')
            conn.execute(f'CREATE DATABASE "{pg_name}"')
        database_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + pg_name
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", database_url, str(workdir), str(port)],
        stdout=subprocess.DEVNULL,
    )
    rows = []
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit(f"the {backend} server did not start")
            time.sleep(0.1)
        # A short warm-up so both endpoints start from a warm process and pool.
        warm = argparse.Namespace(**{**vars(args), "duration": 1})
        run_wrk(wrk, f"{base}/bench/bare", "warm0", workdir / "warm.lua", warm)
        run_wrk(wrk, f"{base}/subscribe", "warm1", workdir / "warm.lua", warm)
        before = subscriber_count(database_url)
        for endpoint in ("/bench/bare", "/subscribe"):
            figures = run_wrk(wrk, base + endpoint, "run", workdir / "run.lua", args)
            rows.append({"backend": backend, "endpoint": endpoint, **figures})
        written = subscriber_count(database_url) - before
        accepted = rows[-1]["requests"] - rows[-1]["non2xx"]
        rows[-1]["written"] = written
        rows[-1]["accepted"] = accepted
    finally:
        server.terminate()
        server.wait(timeout=30)
        if backend == "postgresql":
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--duration", type=int, default=10, help="seconds per endpoint")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    wrk = ensure_wrk()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    print(
        f"POST /subscribe vs a bare endpoint, same server; wrk 2 threads, "
        f"{args.connections} connections, {args.duration} s each; {os.cpu_count()} cores"
    )
    print(
        f"{'backend':<11} {'endpoint':<12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'non-2xx':>8} {'vs bare':>8}"
    )
    for backend in backends:
        rows = bench_backend(backend, wrk, args)
        bare_rps = rows[0]["rps"]
        for row in rows:
            print(
                f"{row['backend']:<11} {row['endpoint']:<12} {row['rps']:>9.0f} "
                f"{row['p50_us'] / 1000:>8.2f} {row['p99_us'] / 1000:>8.2f} "
                f"{row['non2xx']:>8} {row['rps'] / bare_rps:>8.2%}"
            )
        last = rows[-1]
        print(
            f"{'':<11} signups accepted {last['accepted']}, subscriber rows written "
            f"{last['written']}" + ("" if last["written"] >= last["accepted"] else "  LOST")
        )


if __name__ == "__main__":
    main()
