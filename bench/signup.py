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
from sqlalchemy.engine import make_url

PG_ADMIN = os.environ.get("MAILER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

# Each wrk thread has its own Lua state: `setup` (main state) numbers the threads, and the
# address is run id + thread id + a per-thread counter, so every request signs up a new one.
# wrk's own `errors.status` counts only statuses >= 400; `response` counts every non-2xx.
WRK_SCRIPT = r"""
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  counter = 0
  non2xx = 0
  prefix = "bench-" .. RUN .. "-" .. tid .. "-"
end
function request()
  counter = counter + 1
  local body = '{"email":"' .. prefix .. counter .. '@example.com","form":"default"}'
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end
function done(summary, latency, requests)
  local non2xx_total = 0
  for _, thread in ipairs(threads) do
    non2xx_total = non2xx_total + thread:get("non2xx")
  end
  local errors = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    non2xx_total, errors.connect + errors.read + errors.write + errors.timeout))
end
"""


def serve(database_url: str, data_dir: str, port: int) -> None:
    """Run the app with the bare reference endpoint (the child process)."""
    import uvicorn

    from mailer import config, db
    from mailer.app import create_app
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

    # As `mailer serve` runs it (one process, no access log, no proxy headers).
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level=settings.log_level.lower(),
        proxy_headers=False,
        access_log=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0:
        print("wrk is missing; installing the Debian package", file=sys.stderr)
        install = ["apt-get", "install", "-y", "-qq", "wrk"]
        if subprocess.run(install).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], check=False)
            subprocess.run(install, check=False)
        found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is missing: install it with `apt-get install wrk` (as root)")
    return found


class BenchError(Exception):
    """A run that produced no figures; the message says what was seen."""


def run_wrk(wrk: str, url: str, run_id: str, script: Path, args: argparse.Namespace) -> dict:
    script.write_text(f'RUN = "{run_id}"\n' + WRK_SCRIPT)
    done = subprocess.run(
        [wrk, "-t2", f"-c{args.connections}", f"-d{args.duration}s", "-s", str(script), url],
        capture_output=True,
        text=True,
    )
    match = re.search(r"RESULT (.*)", done.stdout)
    if done.returncode != 0 or not match:
        raise BenchError(
            f"wrk {url} exited with {done.returncode}:\n{done.stdout}{done.stderr}".rstrip()
        )
    figures = {k: int(v) for k, v in (pair.split("=") for pair in match.group(1).split())}
    figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
    return figures


def settled_subscriber_count(database_url: str) -> int:
    """Rows in subscribers once requests still in flight have finished (the count holds
    still for half a second). A plain engine: reading needs none of mailer's write lock."""
    from sqlalchemy import create_engine, text

    from mailer.db import normalize_url

    engine = create_engine(normalize_url(database_url))
    try:
        previous = -1
        deadline = time.monotonic() + 30
        while True:
            with engine.connect() as connection:
                count = int(
                    connection.execute(text("SELECT count(*) FROM subscribers")).scalar_one()
                )
            if count == previous or time.monotonic() > deadline:
                return count
            previous = count
            time.sleep(0.5)
    finally:
        engine.dispose()


def stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def server_errors(log_file: Path) -> list[str]:
    """Lines of the server's log that report a failure (tracebacks, errors)."""
    if not log_file.exists():
        return []
    markers = ("Traceback", "ERROR", "Exception", "locked")
    return [line for line in log_file.read_text().splitlines() if any(m in line for m in markers)]


def bench_backend(backend: str, wrk: str, args: argparse.Namespace) -> list[dict]:
    workdir = Path(tempfile.mkdtemp(prefix="mailer-bench-"))
    pg_name = f"mailer_bench_{os.getpid()}"
    if backend == "sqlite":
        database_url = f"sqlite:///{workdir / 'mailer.db'}"
    else:
        try:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}"')
                conn.execute(f'CREATE DATABASE "{pg_name}"')
        except psycopg.OperationalError as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            sys.exit(f"PostgreSQL at {PG_ADMIN} is not reachable ({exc}); set MAILER_BENCH_PG")
        database_url = make_url(PG_ADMIN).set(database=pg_name).render_as_string(False)
    port = free_port()
    log_file = workdir / "server.log"
    rows = []
    server = None
    try:
        with log_file.open("wb") as log:
            server = subprocess.Popen(
                [sys.executable, __file__, "--serve", database_url, str(workdir), str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit(f"the {backend} server did not start:\n{log_file.read_text()}")
            time.sleep(0.1)
        # A short warm-up so both endpoints start from a warm process and pool.
        warm = argparse.Namespace(**{**vars(args), "duration": 1})
        run_wrk(wrk, f"{base}/bench/bare", "warm0", workdir / "warm.lua", warm)
        run_wrk(wrk, f"{base}/subscribe", "warm1", workdir / "warm.lua", warm)
        before = settled_subscriber_count(database_url)
        for endpoint in ("/bench/bare", "/subscribe"):
            figures = run_wrk(wrk, base + endpoint, "run", workdir / "run.lua", args)
            rows.append({"backend": backend, "endpoint": endpoint, **figures})
        written = settled_subscriber_count(database_url) - before
        accepted = rows[-1]["requests"] - rows[-1]["non2xx"]
        rows[-1]["written"] = written
        rows[-1]["accepted"] = accepted
        rows[-1]["server_errors"] = server_errors(log_file)
    except BenchError as exc:
        state = "running" if server.poll() is None else f"exited with {server.returncode}"
        log_tail = "\n".join(log_file.read_text().splitlines()[-30:])
        sys.exit(f"{exc}\nthe {backend} server is {state}; its log ends:\n{log_tail}")
    finally:
        if server is not None:
            stop(server)
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
        f"{'non-2xx':>8} {'sock err':>8} {'vs bare':>8}"
    )
    for backend in backends:
        rows = bench_backend(backend, wrk, args)
        bare_rps = rows[0]["rps"]
        for row in rows:
            print(
                f"{row['backend']:<11} {row['endpoint']:<12} {row['rps']:>9.0f} "
                f"{row['p50_us'] / 1000:>8.2f} {row['p99_us'] / 1000:>8.2f} "
                f"{row['non2xx']:>8} {row['socket_errors']:>8} {row['rps'] / bare_rps:>8.2%}"
            )
        last = rows[-1]
        # wrk stops counting with up to one request per connection in flight; the server
        # still finishes those, so a few more rows than answers is expected.
        in_flight = last["written"] - last["accepted"]
        if in_flight < 0:
            verdict = "LOST SIGNUPS"
        elif in_flight > args.connections:
            verdict = f"UNEXPECTED: {in_flight} more rows than answers"
        else:
            verdict = f"ok (+{in_flight} finished after wrk stopped counting)"
        print(
            f"{'':<11} signups answered 2xx {last['accepted']}, subscriber rows written "
            f"{last['written']}: {verdict}"
        )
        errors = last["server_errors"]
        if errors:
            print(f"{'':<11} server log: {len(errors)} error lines, first: {errors[0]}")


if __name__ == "__main__":
    main()
