"""Webhooks: what queueing events costs an import, and how fast the worker delivers.

Prints (1) CSV import rows per second with no webhook endpoint and with one subscribed to
subscriber.created (every row then queues a delivery in its transaction); (2) deliveries
per second of the webhook worker to a local HTTP server, against the reference of plain
httpx POSTs of the same bodies, one after another, to the same server.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import col, select

from mailer import config, db
from mailer.clock import SystemClock
from mailer.db import session_scope
from mailer.models import WebhookDelivery
from mailer.services import build
from mailer.subscriptions import transfer
from mailer.webhooks import endpoints

SECRET = "bench-secret-key-that-is-long-enough-for-production-0123456789"


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Sink.received += 1
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def settings_for(directory: Path, name: str) -> config.Settings:
    return config.load(
        data_dir=str(directory / name),
        secret_key=SECRET,
        database={"url": f"sqlite:///{directory / name / 'mailer.db'}"},
        webhooks={"allow_http": True},
        network={"allowed_private_networks": ["127.0.0.0/8"]},  # the sink runs here
    )


def import_rate(directory: Path, name: str, rows: int, hook_url: str | None) -> float:
    settings = settings_for(directory, name)
    services = build(settings)
    db.upgrade(services.engine)
    if hook_url is not None:
        with session_scope(services.engine) as session:
            endpoints.create(
                session,
                hook_url,
                ["subscriber.created"],
                "",
                settings.webhooks,
                services.outbound,
                SystemClock().now(),
            )
    lines = ["email\n"] + [f"reader{n}@example.com\n" for n in range(rows)]
    started = time.perf_counter()
    report = transfer.import_csv(services.engine, lines, "news", "bench", SystemClock().now)
    elapsed = time.perf_counter() - started
    assert report.imported == rows
    services.engine.dispose()
    return rows / elapsed


async def deliver_all(directory: Path, rows: int, hook_url: str) -> tuple[float, list[str]]:
    """The worker's deliveries per second, and the bodies it sent (for the reference)."""
    settings = settings_for(directory, "with-endpoint")
    services = build(settings)
    with session_scope(services.engine) as session:
        bodies = list(session.exec(select(WebhookDelivery.payload)))
    assert len(bodies) == rows
    started = time.perf_counter()
    async with services.webhooks.client() as client:  # one, as the loop has
        while await services.webhooks.deliver_due_once(client):
            pass
    elapsed = time.perf_counter() - started
    with session_scope(services.engine) as session:
        statuses = set(session.exec(select(col(WebhookDelivery.status)).distinct()))
    assert statuses == {"delivered"}, statuses
    services.engine.dispose()
    return rows / elapsed, bodies


async def reference_rate(bodies: list[str], hook_url: str) -> float:
    async with httpx.AsyncClient() as client:
        started = time.perf_counter()
        for body in bodies:
            answer = await client.post(
                hook_url, content=body, headers={"Content-Type": "application/json"}
            )
            assert answer.status_code == 204
        return len(bodies) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        plain = import_rate(directory, "no-endpoint", args.rows, None)
        hooked = import_rate(directory, "with-endpoint", args.rows, hook_url)
        print(f"import, no endpoint:          {plain:8.0f} rows/s")
        print(f"import, one endpoint:         {hooked:8.0f} rows/s ({hooked / plain:.0%})")
        worker, bodies = asyncio.run(deliver_all(directory, args.rows, hook_url))
        reference = asyncio.run(reference_rate(bodies, hook_url))
        print(f"webhook worker:               {worker:8.0f} deliveries/s")
        print(
            f"reference (bare httpx POSTs): {reference:8.0f} requests/s ({worker / reference:.0%})"
        )
    server.shutdown()


if __name__ == "__main__":
    main()
