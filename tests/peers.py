"""HTTP peers the app talks to, run on loopback for a test and loaded as a pytest plugin
by conftest: a publisher's feed server (`feed_server`) and a webhook receiver
(`receiver`) that records each signed request."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/">
<channel><title>Example News</title><link>https://news.example.com/</link>
<item>
  <title>Ceasefire talks resume</title>
  <link>https://news.example.com/world/talks</link>
  <description>&lt;p&gt;Negotiators met &lt;b&gt;again&lt;/b&gt; on Monday.&lt;/p&gt;</description>
  <category>World News</category>
  <author>desk@example.com (World Desk)</author>
  <pubDate>Mon, 23 Nov 2026 06:30:00 GMT</pubDate>
  <media:content url="https://img.example.com/talks.jpg" medium="image"/>
</item>
<item>
  <title>{second_title}</title>
  <link>https://news.example.com/health/flu</link>
  <description>Flu season starts early.</description>
  <category>Gesundheit</category>
  <pubDate>Mon, 23 Nov 2026 05:00:00 GMT</pubDate>
</item>
</channel></rss>"""


class FeedServer:
    """Serves whatever `pages[path]` holds: (status, body)."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[int, str]] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                status, body = pages.get(self.path, (404, "not here"))
                self.send_response(status)
                self.send_header("Content-Type", "application/xml; charset=utf-8")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    yield server
    server.close()


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def event(self) -> str:
        return self.headers["x-mailer-event"]


class Receiver:
    """An HTTP server that records every POST; `replies` are the status codes of the next
    answers (200 once they run out)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[Request] = []
        self.replies: deque[int] = deque()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    headers = {name.lower(): value for name, value in self.headers.items()}
                    receiver.requests.append(Request(self.path, headers, body))
                    status = receiver.replies.popleft() if receiver.replies else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "https://elsewhere.example/")
                answer = b"ok" if status < 300 else b"something broke " * 100
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}/hooks/mailer"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Request]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} requests, got {len(self.requests)}")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()
