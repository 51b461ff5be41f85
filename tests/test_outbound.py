"""Outbound requests (feeds, webhooks, SNS certificates) reach public addresses only.

Loopback, private, link-local, CGNAT, unique-local, multicast and unspecified addresses are
refused in every spelling, when the URL is entered and again at the address each
connection actually uses: after the name is resolved, after each redirect, on every poll.
Host names are resolved by a stub (`dns`); the one server the policy lets through listens
on 127.0.0.2 (`[network] allowed_private_networks = ["127.0.0.2/32"]`), so every spelling
of 127.0.0.1 is refused. A guard fails any test that tries to open a socket to anything
but loopback, so even a broken check never sends a packet off this machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from mailer import config
from mailer.clock import FrozenClock
from mailer.db import session_scope
from mailer.models import Article, Feed, WebhookAttempt, WebhookEndpoint
from mailer.outbound import AddressPolicy, is_public
from mailer.services import Services, build
from tests.conftest import SECRET, count_rows, free_port

REFUSED = "refused: private address"
ALLOWED_HOST = "127.0.0.2"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-bounces"

# ---- the guard: no socket to anything but loopback, whatever the code under test does --

_guarding = False
_off_machine: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "socket.connect" or not _guarding:
        return
    address = args[1]
    if isinstance(address, tuple) and isinstance(address[0], str):
        host = address[0].split("%")[0]
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            _off_machine.append(host)
            raise ConnectionRefusedError(f"test guard: no connection to {host}")


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def only_loopback() -> Iterator[None]:
    """Fails the test if anything tried to connect off this machine."""
    global _guarding
    _off_machine.clear()
    _guarding = True
    try:
        yield
    finally:
        _guarding = False
    assert _off_machine == [], f"tried to connect to {_off_machine}"


# ---- a stub DNS and a loopback web server ----------------------------------------------


@dataclass
class StubDns:
    """Answers names from `answers`: a list of successive answers per name (the last one
    repeats); any other name does not resolve. Records every question."""

    answers: dict[str, list[list[str]]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        queue = self.answers.get(host)
        if not queue:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return queue.pop(0) if len(queue) > 1 else queue[0]


class WebServer:
    """Answers `pages[path]` = (status, body, headers) and records each request's path
    and Host header."""

    def __init__(self, host: str) -> None:
        self.pages: dict[str, tuple[int, str, dict[str, str]]] = {}
        self.requests: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.requests.append((self.path, self.headers.get("Host", "")))
                status, body, headers = server.pages.get(self.path, (404, "not here", {}))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body.encode())

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.port = int(self.server.server_address[1])
        self.base = f"http://{host}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Our CMS</title><link>https://news.example.com/</link>
<item><title>Council votes</title><link>https://news.example.com/local/council</link>
<pubDate>Mon, 09 Nov 2026 06:30:00 GMT</pubDate></item>
</channel></rss>"""


@pytest.fixture
def cms() -> Iterator[WebServer]:
    """The newsroom's own server, on the one private address the settings allow."""
    server = WebServer(ALLOWED_HOST)
    yield server
    server.close()


@pytest.fixture
def trap() -> Iterator[WebServer]:
    """A server on 127.0.0.1, which the settings do not allow: it must never be asked."""
    server = WebServer("127.0.0.1")
    yield server
    server.close()


@pytest.fixture
def dns() -> StubDns:
    return StubDns()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "network": {"allowed_private_networks": [f"{ALLOWED_HOST}/32"]},
        "webhooks": {"allow_http": True, "timeout_seconds": 3},
        "bounces": {"ses_topic_arns": [TOPIC]},
    }


@pytest.fixture
def services(settings: config.Settings, clock: FrozenClock, dns: StubDns) -> Iterator[Services]:
    built = build(settings, clock=clock, resolver=dns)
    yield built
    built.engine.dispose()


# Every spelling of a refused address the operating system reads, and this machine's names.
REFUSED_HOSTS = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f000001",
    "017700000001",
    "0x7f.1",
    "[::ffff:127.0.0.1]",
    "[::1]",
    "[0:0:0:0:0:ffff:7f00:1]",
    "[::127.0.0.1]",
    "localhost",
    "LocalHost.",
    "news.localhost",
    socket.gethostname(),
    "169.254.169.254",
    "[::ffff:169.254.169.254]",
    "10.0.0.5",
    "172.16.4.2",
    "192.168.1.10",
    "100.64.0.1",
    "[fd00::1]",
    "[fe80::1]",
    "0.0.0.0",
    "0",
    "[::]",
    "[64:ff9b::a00:5]",
    "[2002:a00:5::1]",
    "224.0.0.1",
    "255.255.255.255",
]


def poll(editor: TestClient, feed_id: int) -> dict[str, Any]:
    answer = editor.post(f"/api/v1/feeds/{feed_id}/poll")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def add_feed(editor: TestClient, url: str) -> int:
    answer = editor.post("/api/v1/feeds", json={"url": url})
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


# ---- when a URL is entered -------------------------------------------------------------


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_a_feed_or_webhook_at_a_private_address_in_any_spelling_is_refused_when_entered(
    editor: TestClient, services: Services, dns: StubDns, host: str
) -> None:
    feed = editor.post("/api/v1/feeds", json={"url": f"http://{host}:8080/feed.xml"})
    assert feed.status_code == 422, feed.text
    assert REFUSED in feed.text
    hook = editor.post(
        "/api/v1/webhooks", json={"url": f"https://{host}/hook", "events": ["send.started"]}
    )
    assert hook.status_code == 422, hook.text
    assert REFUSED in hook.text
    assert count_rows(services, Feed) == 0 and count_rows(services, WebhookEndpoint) == 0
    assert dns.asked == [], "an address is read, not looked up"


def test_a_name_is_accepted_when_entered_and_checked_when_connecting(
    editor: TestClient, dns: StubDns
) -> None:
    add_feed(editor, "https://feeds.example.test/rss")
    hook = editor.post(
        "/api/v1/webhooks",
        json={"url": "https://hooks.example.test/x", "events": ["send.started"]},
    )
    assert hook.status_code == 201, hook.text
    assert dns.asked == [], "no lookup while an editor waits"


# ---- when connecting: names, rebinding, redirects ---------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        ["10.0.0.5"],
        ["169.254.169.254"],
        ["192.168.0.10"],
        ["172.31.255.1"],
        ["100.100.100.100"],
        ["127.0.0.1"],
        ["::1"],
        ["fd12:3456::1"],
        ["fe80::1"],
        ["::ffff:10.0.0.5"],
        ["0.0.0.0"],
        ["93.184.215.14", "10.0.0.5"],
        [ALLOWED_HOST, "10.0.0.5"],
    ],
)
def test_a_feed_whose_name_resolves_to_a_private_address_is_never_fetched(
    editor: TestClient, services: Services, dns: StubDns, answer: list[str]
) -> None:
    feed_id = add_feed(editor, "http://feed.example.test/rss")
    dns.answers["feed.example.test"] = [answer]
    outcome = poll(editor, feed_id)
    assert outcome == {"status": "error", "new": 0, "updated": 0, "error": REFUSED}
    [shown] = editor.get("/api/v1/feeds").json()
    assert (shown["last_status"], shown["last_error"]) == ("error", REFUSED)
    assert dns.asked == ["feed.example.test"]
    assert count_rows(services, Article) == 0


def test_each_poll_checks_the_address_it_connects_to_so_a_rebound_name_is_refused(
    editor: TestClient, services: Services, dns: StubDns, cms: WebServer
) -> None:
    cms.pages["/rss"] = (200, RSS, {"Content-Type": "application/rss+xml"})
    url = f"http://cms.example.test:{cms.port}/rss"
    dns.answers["cms.example.test"] = [[ALLOWED_HOST], ["10.0.0.5"]]
    feed_id = add_feed(editor, url)

    first = poll(editor, feed_id)
    assert (first["status"], first["new"]) == ("ok", 1)
    assert cms.requests == [("/rss", f"cms.example.test:{cms.port}")], "Host names the URL's host"

    second = poll(editor, feed_id)
    assert second["status"] == "error" and second["error"] == REFUSED
    assert len(cms.requests) == 1
    assert dns.asked == ["cms.example.test", "cms.example.test"]


@pytest.mark.parametrize("host", [*REFUSED_HOSTS, "metadata.example.test"])
def test_a_redirect_to_a_private_address_is_refused_and_never_followed(
    editor: TestClient,
    services: Services,
    dns: StubDns,
    cms: WebServer,
    trap: WebServer,
    host: str,
) -> None:
    dns.answers["metadata.example.test"] = [["169.254.169.254"]]
    target = f"http://{host}:{trap.port}/feed.xml"
    trap.pages["/feed.xml"] = (200, RSS, {})
    cms.pages["/rss"] = (302, "", {"Location": target})
    feed_id = add_feed(editor, cms.base + "/rss")
    outcome = poll(editor, feed_id)
    assert outcome["status"] == "error" and outcome["error"] == REFUSED
    assert [path for path, _ in cms.requests] == ["/rss"]
    assert trap.requests == [], "the redirect's target was never asked"
    assert count_rows(services, Article) == 0


def test_an_allowed_server_that_is_down_shows_a_generic_error(
    editor: TestClient, dns: StubDns
) -> None:
    closed = free_port()
    feed_id = add_feed(editor, f"http://{ALLOWED_HOST}:{closed}/rss")
    outcome = poll(editor, feed_id)
    assert outcome["error"] == "could not connect", "no errno, port or address to map a network"
    unknown = add_feed(editor, "http://nowhere.example.test/rss")
    assert poll(editor, unknown)["error"] == "could not connect"


# ---- webhooks --------------------------------------------------------------------------


def test_a_webhook_whose_name_resolves_to_a_private_address_is_recorded_as_refused(
    editor: TestClient, services: Services, dns: StubDns, trap: WebServer
) -> None:
    dns.answers["hooks.example.test"] = [["127.0.0.1"], ["10.20.30.40"]]
    hook = editor.post(
        "/api/v1/webhooks",
        json={"url": f"http://hooks.example.test:{trap.port}/x", "events": ["send.started"]},
    ).json()
    for _ in range(2):
        assert editor.post(f"/api/v1/webhooks/{hook['id']}/test").status_code in (200, 202)
    assert asyncio.run(services.webhooks.deliver_due_once()) == 2
    with session_scope(services.engine) as session:
        attempts = session.exec(select(WebhookAttempt)).all()
    assert [(a.status_code, a.error) for a in attempts] == [(None, REFUSED)] * 2
    assert trap.requests == []
    listed = editor.get(f"/api/v1/webhooks/{hook['id']}/deliveries").json()
    assert {attempt["error"] for d in listed for attempt in d["attempt_log"]} == {REFUSED}


# ---- SNS certificates ------------------------------------------------------------------


def test_an_sns_certificate_on_a_host_that_resolves_privately_is_never_fetched(
    client: TestClient, services: Services, dns: StubDns, clock: FrozenClock
) -> None:
    host = "sns.us-east-1.amazonaws.com"
    dns.answers[host] = [["169.254.169.254"]]
    message = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Message": json.dumps({"notificationType": "Bounce"}),
        "Timestamp": clock.now().strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "SignatureVersion": "1",
        "Signature": "c2lnbmF0dXJl",
        "SigningCertURL": f"https://{host}/SimpleNotificationService-abc.pem",
    }
    answer = client.post(
        "/webhooks/bounces/ses",
        content=json.dumps(message),
        headers={"Content-Type": "text/plain"},
    )
    assert answer.status_code == 403, answer.text
    assert REFUSED in answer.json()["detail"]
    assert dns.asked == [host]


# ---- the address policy and its setting ------------------------------------------------


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::808:808", True),
        ("127.0.0.1", False),
        ("10.255.255.255", False),
        ("172.16.0.1", False),
        ("192.168.255.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("100.127.255.254", False),
        ("0.0.0.0", False),
        ("255.255.255.255", False),
        ("224.0.0.251", False),
        ("239.255.255.250", False),
        ("240.0.0.1", False),
        ("192.0.2.1", False),
        ("198.18.0.1", False),
        ("::", False),
        ("::1", False),
        ("fc00::1", False),
        ("fdff::1", False),
        ("fe80::1", False),
        ("fec0::1", False),
        ("ff02::1", False),
        ("ff0e::1", False),
        ("2001:db8::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("::10.0.0.1", False),
        ("64:ff9b::7f00:1", False),
        ("64:ff9b::a9fe:a9fe", False),
        ("64:ff9b:1::a00:1", False),
        ("2002:7f00:1::", False),
        ("2002:c0a8:101::", False),
    ],
)
def test_only_public_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


def test_allowed_networks_let_their_private_addresses_through_and_no_others() -> None:
    policy = AddressPolicy((ipaddress.ip_network("10.0.0.0/8"),))
    assert policy.permits(ipaddress.ip_address("10.1.2.3"))
    assert policy.permits(ipaddress.ip_address("::ffff:10.1.2.3"))
    assert not policy.permits(ipaddress.ip_address("192.168.1.1"))
    assert not policy.permits(ipaddress.ip_address("127.0.0.1"))


def test_allowed_private_networks_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAILER_NETWORK__ALLOWED_PRIVATE_NETWORKS", '["10.0.0.0/8", "fd00::/8"]')
    assert config.load().network.allowed_private_networks == ["10.0.0.0/8", "fd00::/8"]
    assert config.Settings().network.allowed_private_networks == ["10.0.0.0/8", "fd00::/8"]


@pytest.mark.parametrize(
    "networks", ['["10.0.0.0/33"]', '["nonsense"]', '["10.0.0.1/8"]', '["10.0.0.0/8", ""]']
)
def test_an_invalid_allowed_network_stops_start_up_with_one_line(
    tmp_path: Path, networks: str
) -> None:
    script = Path(sys.executable).with_name("mailer")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "mailer.cli"]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin"),
        "MAILER_SECRET_KEY": SECRET,
        "MAILER_DATA_DIR": str(tmp_path / "var"),
        "MAILER_NETWORK__ALLOWED_PRIVATE_NETWORKS": networks,
    }
    done = subprocess.run(
        [*command, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "allowed_private_networks" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "var" / "mailer.db").exists()
