"""Outgoing webhooks across real boundaries: the public API changes a reader, the worker
POSTs signed events to a real HTTP (and HTTPS) server on loopback, and the editors' API
shows every try."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from sqlmodel import col, select

from mailer import config
from mailer.clock import FrozenClock
from mailer.db import session_scope
from mailer.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from mailer.services import Services, build
from mailer.subscriptions import transfer
from mailer.tokens import Purpose
from mailer.webhooks import endpoints, events, queue, signing
from tests.conftest import SECRET, SmtpSink, count_rows, free_port, link_in
from tests.peers import Receiver, Request

READER = "reader@example.com"
RETRY_BASE = 60.0
SUBSCRIBER_EVENTS = ["subscriber.created", "subscriber.confirmed", "subscriber.unsubscribed"]


# ---- a real endpoint on loopback -------------------------------------------------------


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        # The receivers run on this machine, which outbound requests may not reach else.
        "network": {"allowed_private_networks": ["127.0.0.0/8", "::1/128"]},
        "webhooks": {
            "allow_http": True,
            "poll_interval_seconds": 0.05,
            "retry_base_seconds": RETRY_BASE,
            "max_attempts": 4,
            "timeout_seconds": 3,
        },
    }


def register(editor: TestClient, url: str, events: list[str], **extra: Any) -> dict[str, Any]:
    answer = editor.post("/api/v1/webhooks", json={"url": url, "events": events, **extra})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def deliveries(editor: TestClient, webhook_id: int) -> list[dict[str, Any]]:
    answer = editor.get(f"/api/v1/webhooks/{webhook_id}/deliveries")
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def wait_until_settled(editor: TestClient, webhook_id: int, timeout: float = 10.0) -> list[Any]:
    """The deliveries once none is being tried (each delivered, failed or awaiting a retry)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = deliveries(editor, webhook_id)
        if all(not d["in_flight"] and d["attempt_log"] for d in found):
            return found
        time.sleep(0.02)
    raise AssertionError(f"deliveries still in flight: {deliveries(editor, webhook_id)}")


def verified(request: Request, secret: str, clock: FrozenClock) -> bool:
    return signing.verify(
        secret,
        request.headers["x-mailer-timestamp"],
        request.body,
        request.headers["x-mailer-signature"],
        now=clock.now().timestamp(),
    )


def naive_utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def deliver_due(services: Services) -> int:
    return asyncio.run(services.webhooks.deliver_due_once())


def add_endpoint(services: Services, url: str, event_names: list[str]) -> WebhookEndpoint:
    with session_scope(services.engine) as session:
        endpoint = endpoints.create(
            session,
            url,
            event_names,
            "",
            services.settings.webhooks,
            services.outbound,
            services.clock.now(),
        )
        session.expunge(endpoint)
    return endpoint


def emit_ping_like(services: Services, event: WebhookEvent, data: dict[str, Any]) -> None:
    with session_scope(services.engine) as session:
        events.emit(session, event, data, services.clock.now())


# ---- events from the readers' side -----------------------------------------------------


@pytest.mark.both_databases
def test_signup_confirm_and_unsubscribe_reach_the_endpoint_in_order_and_signed(
    editor: TestClient,
    services: Services,
    smtp: SmtpSink,
    receiver: Receiver,
    clock: FrozenClock,
) -> None:
    hook = register(editor, receiver.url, SUBSCRIBER_EVENTS, description="CRM")
    assert hook["secret"].startswith("whsec_")
    assert "secret" not in editor.get(f"/api/v1/webhooks/{hook['id']}").json()

    assert editor.post("/subscribe", json={"email": READER}).status_code == 202
    mail = smtp.wait_for(1)[-1]
    assert editor.post(link_in(mail.message, "/confirm/")).status_code == 200
    [subscriber] = editor.get("/api/v1/subscribers", params={"email": READER}).json()
    token = services.signer.sign(Purpose.unsubscribe, {"s": subscriber["id"]})
    left = editor.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert left.status_code == 200

    received = receiver.wait_for(3)
    assert [r.event for r in received] == SUBSCRIBER_EVENTS
    for request in received:
        assert request.path == "/hooks/mailer"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"] == "mailer-webhooks"
        assert verified(request, hook["secret"], clock)
        assert not verified(request, "whsec_another-secret", clock)
        payload = request.payload
        assert payload["event"] == request.event
        assert str(payload["id"]) == request.headers["x-mailer-delivery"]
        assert payload["data"]["subscriber_id"] == subscriber["id"]
        assert payload["data"]["email"] == READER
        assert payload["data"]["lists"] == ["news"]
        assert dt.datetime.fromisoformat(payload["created_at"]).tzinfo is not None
    assert received[0].payload["data"]["status"] == "pending"
    tampered = received[0].body.replace(b"news", b"sport")
    assert not signing.verify(
        hook["secret"],
        received[0].headers["x-mailer-timestamp"],
        tampered,
        received[0].headers["x-mailer-signature"],
        now=clock.now().timestamp(),
    )

    settled = wait_until_settled(editor, hook["id"])
    assert [d["event"] for d in settled] == list(reversed(SUBSCRIBER_EVENTS)), "newest first"
    assert all(d["status"] == "delivered" and d["attempts"] == 1 for d in settled)
    assert all(d["attempt_log"][0]["status_code"] == 200 for d in settled)


def test_an_endpoint_not_subscribed_to_an_event_gets_nothing(
    editor: TestClient, smtp: SmtpSink, receiver: Receiver
) -> None:
    other = Receiver()
    try:
        confirmed_only = register(editor, other.url, ["subscriber.confirmed"])
        everything = register(editor, receiver.url, SUBSCRIBER_EVENTS)
        editor.post("/subscribe", json={"email": READER})

        [created] = receiver.wait_for(1)
        assert created.event == "subscriber.created"
        time.sleep(0.3)  # several polls of the worker
        assert other.requests == []
        assert deliveries(editor, confirmed_only["id"]) == []

        mail = smtp.wait_for(1)[-1]
        editor.post(link_in(mail.message, "/confirm/"))
        [confirmed] = other.wait_for(1)
        assert confirmed.event == "subscriber.confirmed"
        assert [r.event for r in receiver.wait_for(2)] == SUBSCRIBER_EVENTS[:2]
        assert len(deliveries(editor, everything["id"])) == 2
    finally:
        other.stop()


@pytest.mark.both_databases
def test_a_disabled_endpoint_gets_no_events_and_its_queue_waits(
    editor: TestClient, receiver: Receiver
) -> None:
    hook = register(editor, receiver.url, ["subscriber.created"])
    off = editor.patch(f"/api/v1/webhooks/{hook['id']}", json={"enabled": False})
    assert off.status_code == 200 and off.json()["enabled"] is False
    editor.post("/subscribe", json={"email": READER})
    ping = editor.post(f"/api/v1/webhooks/{hook['id']}/test").json()
    time.sleep(0.3)
    assert receiver.requests == []
    [waiting] = deliveries(editor, hook["id"])
    assert waiting["id"] == ping["id"], "no event is queued while disabled"
    assert waiting["status"] == "pending" and waiting["attempts"] == 0

    editor.patch(f"/api/v1/webhooks/{hook['id']}", json={"enabled": True})
    [request] = receiver.wait_for(1)
    assert request.event == "ping" and request.payload["id"] == ping["id"]


# ---- sends ----------------------------------------------------------------------------


@pytest.mark.both_databases
def test_a_send_reports_started_and_finished_with_its_counts(
    editor: TestClient, smtp: SmtpSink, receiver: Receiver, clock: FrozenClock
) -> None:
    editor.post("/subscribe", json={"email": READER})
    editor.post(link_in(smtp.wait_for(1)[-1].message, "/confirm/"))
    hook = register(editor, receiver.url, ["send.started", "send.finished"])
    article = editor.post(
        "/api/v1/articles",
        json={
            "url": "https://news.example.com/story-1",
            "title": "Story 1",
            "published_at": (clock.now() - dt.timedelta(hours=1)).isoformat(),
        },
    )
    assert article.status_code == 201, article.text
    digest = editor.post(
        "/api/v1/digests",
        json={"list": "news", "name": "Brief", "schedule": "0 7 * * *", "timezone": "UTC"},
    )
    assert digest.status_code == 201, digest.text
    send = editor.post(f"/api/v1/digests/{digest.json()['id']}/send")
    assert send.status_code == 202, send.text

    started, finished = receiver.wait_for(2)
    assert [started.event, finished.event] == ["send.started", "send.finished"]
    assert all(verified(r, hook["secret"], clock) for r in (started, finished))
    for request in (started, finished):
        data = request.payload["data"]
        assert data["send_id"] == send.json()["id"]
        assert data["digest_id"] == digest.json()["id"]
        assert data["list"] == "news"
        assert data["total"] == 1
    assert started.payload["data"]["status"] == "queued"
    assert started.payload["data"]["sent"] == 0
    assert finished.payload["data"]["status"] == "done"
    assert finished.payload["data"]["sent"] == 1
    assert finished.payload["data"]["failed"] == 0


# ---- failures and retries ---------------------------------------------------------------


@pytest.mark.both_databases
def test_an_endpoint_failing_twice_gets_the_event_on_the_third_try(
    editor: TestClient, receiver: Receiver, clock: FrozenClock
) -> None:
    hook = register(editor, receiver.url, ["subscriber.created"])
    receiver.replies.extend([500, 500])
    ping = editor.post(f"/api/v1/webhooks/{hook['id']}/test")
    assert ping.status_code == 202
    assert ping.json()["event"] == "ping" and ping.json()["status"] == "pending"

    receiver.wait_for(1)
    [first] = wait_until_settled(editor, hook["id"])
    assert first["status"] == "pending" and first["attempts"] == 1
    assert first["attempt_log"][0]["status_code"] == 500
    assert first["attempt_log"][0]["error"].startswith("HTTP 500: something broke")
    assert len(first["attempt_log"][0]["error"]) <= 500, "only an excerpt of the answer"
    time.sleep(0.2)
    assert len(receiver.requests) == 1, "no retry before its time"

    clock.advance(seconds=RETRY_BASE * 1.1 + 1)
    receiver.wait_for(2)
    clock.advance(seconds=2 * RETRY_BASE * 1.1 + 1)
    third = receiver.wait_for(3)[2]
    assert third.event == "ping"
    assert third.payload["data"] == {"webhook_id": hook["id"]}
    assert len({r.body for r in receiver.requests}) == 1, "every try sends the same body"

    [done] = wait_until_settled(editor, hook["id"])
    assert done["status"] == "delivered" and done["attempts"] == 3
    assert [a["status_code"] for a in done["attempt_log"]] == [500, 500, 200]
    assert all(a["duration_ms"] >= 0 for a in done["attempt_log"])
    assert done["next_attempt_at"] is None
    listed = editor.get("/api/v1/webhooks").json()
    assert [(h["id"], h["delivered"], h["pending"]) for h in listed] == [(hook["id"], 1, 0)]


@pytest.mark.both_databases
def test_an_endpoint_that_is_down_is_retried_with_growing_waits_then_given_up(
    services: Services, clock: FrozenClock
) -> None:
    endpoint = add_endpoint(
        services, f"http://127.0.0.1:{free_port()}/down", ["subscriber.confirmed"]
    )
    emit_ping_like(services, WebhookEvent.subscriber_confirmed, {"subscriber_id": 1})

    waits = []
    for _ in range(services.settings.webhooks.max_attempts):
        assert deliver_due(services) == 1
        assert deliver_due(services) == 0, "not due again at once"
        with session_scope(services.engine) as session:
            delivery = session.exec(select(WebhookDelivery)).one()
            if delivery.status != "pending":
                break
            wait = naive_utc(delivery.next_attempt_at) - naive_utc(clock.now())
        waits.append(wait.total_seconds())
        clock.advance(seconds=wait.total_seconds())

    assert len(waits) == 3
    for attempt, waited in enumerate(waits, start=1):
        base = RETRY_BASE * 2 ** (attempt - 1)
        assert base <= waited <= base * 1.1 + 0.001
    assert delivery.status == "failed"
    assert delivery.attempts == 4 and delivery.delivered_at is None
    with session_scope(services.engine) as session:
        attempts = session.exec(select(WebhookAttempt)).all()
    assert len(attempts) == 4
    assert all(a.status_code is None and a.error == "could not connect" for a in attempts)
    clock.advance(days=1)
    assert deliver_due(services) == 0, "a failed delivery is not tried again by itself"
    assert endpoint.id is not None


def test_a_failed_delivery_can_be_sent_again_from_the_api(
    editor: TestClient, services: Services, receiver: Receiver, clock: FrozenClock
) -> None:
    hook = register(editor, receiver.url, ["subscriber.created"])
    receiver.replies.extend([503] * 4)
    editor.post(f"/api/v1/webhooks/{hook['id']}/test")
    for count in range(1, 5):
        receiver.wait_for(count)
        clock.advance(hours=1)
    [failed] = wait_until_settled(editor, hook["id"])
    assert failed["status"] == "failed" and failed["attempts"] == 4
    assert editor.get("/api/v1/webhooks").json()[0]["failed"] == 1

    again = editor.post(f"/api/v1/webhooks/{hook['id']}/deliveries/{failed['id']}/retry")
    assert again.status_code == 200, again.text
    receiver.wait_for(5)
    [done] = wait_until_settled(editor, hook["id"])
    assert done["status"] == "delivered"
    assert [a["status_code"] for a in done["attempt_log"]] == [503] * 4 + [200]
    not_failed = editor.post(f"/api/v1/webhooks/{hook['id']}/deliveries/{done['id']}/retry")
    assert not_failed.status_code == 422


def test_redirects_are_not_followed(
    editor: TestClient, receiver: Receiver, clock: FrozenClock
) -> None:
    hook = register(editor, receiver.url, ["subscriber.created"])
    receiver.replies.append(302)
    editor.post(f"/api/v1/webhooks/{hook['id']}/test")
    receiver.wait_for(1)
    [delivery] = wait_until_settled(editor, hook["id"])
    assert delivery["status"] == "pending"
    [attempt] = delivery["attempt_log"]
    assert attempt["status_code"] == 302
    assert "not followed" in attempt["error"]
    assert len(receiver.requests) == 1


@pytest.mark.both_databases
def test_queued_events_survive_a_restart(
    settings: config.Settings, services: Services, receiver: Receiver, clock: FrozenClock
) -> None:
    endpoint = add_endpoint(services, receiver.url, ["subscriber.unsubscribed"])
    emit_ping_like(services, WebhookEvent.subscriber_unsubscribed, {"subscriber_id": 7})
    services.engine.dispose()

    restarted = build(settings, clock=clock)
    try:
        assert deliver_due(restarted) == 1
    finally:
        restarted.engine.dispose()
    [request] = receiver.requests
    assert request.payload["data"] == {"subscriber_id": 7}
    with session_scope(services.engine) as session:
        assert session.exec(select(WebhookDelivery.status)).one() == "delivered"
    assert endpoint.id is not None


@pytest.mark.both_databases
def test_a_rolled_back_change_queues_no_event(services: Services, receiver: Receiver) -> None:
    add_endpoint(services, receiver.url, ["subscriber.created"])
    with pytest.raises(RuntimeError), session_scope(services.engine) as session:
        events.emit(session, WebhookEvent.subscriber_created, {"x": 1}, services.clock.now())
        assert session.exec(select(WebhookDelivery)).all(), "queued inside the transaction"
        raise RuntimeError("the change failed")
    assert count_rows(services, WebhookDelivery) == 0
    assert deliver_due(services) == 0
    assert receiver.requests == []


# ---- the editors' API -----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"url": "https://hooks.example.com/x", "events": ["subscriber.deleted"]},
        {"url": "https://hooks.example.com/x", "events": []},
        {"url": "ftp://hooks.example.com/x", "events": ["send.started"]},
        {"url": "https://user:pw@hooks.example.com/x", "events": ["send.started"]},
        {"url": "https:///no-host", "events": ["send.started"]},
        {"url": "https://hooks.example.com:99999/x", "events": ["send.started"]},
        {"url": "not a url", "events": ["send.started"]},
        {"url": "https://hooks.example.com/\x00", "events": ["send.started"]},
        {"url": "https://a.example/x", "events": ["send.started"], "description": "a\x00b"},
        {"events": ["send.started"]},
        {"url": "https://hooks.example.com/x", "events": "send.started"},
        {"url": "https://hooks.example.com/x", "events": ["send.started"], "secret": "mine"},
    ],
)
def test_bad_endpoints_are_refused_and_nothing_is_written(
    editor: TestClient, services: Services, body: dict[str, Any]
) -> None:
    answer = editor.post("/api/v1/webhooks", json=body)
    assert answer.status_code == 422, answer.text
    assert "detail" in answer.json()
    assert count_rows(services, WebhookEndpoint) == 0


def test_a_bad_change_is_refused_and_changes_nothing(
    editor: TestClient, receiver: Receiver
) -> None:
    hook = register(editor, receiver.url, ["send.started"])
    for change in ({"events": ["nope"]}, {"url": "gopher://x"}, {"enabled": "maybe"}):
        answer = editor.patch(f"/api/v1/webhooks/{hook['id']}", json=change)
        assert answer.status_code == 422, answer.text
    shown = editor.get(f"/api/v1/webhooks/{hook['id']}").json()
    assert (shown["url"], shown["events"], shown["enabled"]) == (
        receiver.url,
        ["send.started"],
        True,
    )
    assert editor.get("/api/v1/webhooks/999").status_code == 404
    assert editor.post("/api/v1/webhooks/999/test").status_code == 404
    assert editor.get("/api/v1/webhooks/999/deliveries").status_code == 404


@pytest.mark.both_databases
def test_endpoints_are_changed_and_deleted_with_their_deliveries(
    editor: TestClient, services: Services, receiver: Receiver
) -> None:
    hook = register(editor, receiver.url, ["send.started"])
    changed = editor.patch(
        f"/api/v1/webhooks/{hook['id']}",
        json={"events": ["send.finished", "subscriber.created"], "description": "Warehouse"},
    )
    assert changed.status_code == 200
    assert changed.json()["events"] == ["send.finished", "subscriber.created"]
    assert changed.json()["description"] == "Warehouse"
    editor.patch(f"/api/v1/webhooks/{hook['id']}", json={"enabled": False})
    editor.post(f"/api/v1/webhooks/{hook['id']}/test")
    editor.post(f"/api/v1/webhooks/{hook['id']}/test")
    assert count_rows(services, WebhookDelivery) == 2

    assert editor.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 204
    assert editor.get(f"/api/v1/webhooks/{hook['id']}").status_code == 404
    assert editor.get("/api/v1/webhooks").json() == []
    assert count_rows(services, WebhookDelivery) == 0, "pending deliveries are dropped"
    assert receiver.requests == []


def test_the_webhooks_api_needs_an_api_key(client: TestClient, services: Services) -> None:
    calls = [
        ("get", "/api/v1/webhooks", None),
        ("post", "/api/v1/webhooks", {"url": "https://a.example/x", "events": ["send.started"]}),
        ("get", "/api/v1/webhooks/1", None),
        ("patch", "/api/v1/webhooks/1", {"enabled": False}),
        ("delete", "/api/v1/webhooks/1", None),
        ("get", "/api/v1/webhooks/1/deliveries", None),
        ("post", "/api/v1/webhooks/1/test", None),
    ]
    for method, path, body in calls:
        answer = client.request(method, path, json=body)
        assert answer.status_code == 401, (method, path)
    assert count_rows(services, WebhookEndpoint) == 0


class TestHttpsOnly:
    """Without allow_http, only https:// URLs to other machines are accepted."""

    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {}

    @pytest.mark.parametrize(
        "url",
        [
            "http://hooks.example.com/x",
            "https://localhost/x",
            "https://127.0.0.1:8443/x",
            "https://[::1]/x",
        ],
    )
    def test_plain_http_and_this_machine_are_refused(
        self, editor: TestClient, services: Services, url: str
    ) -> None:
        answer = editor.post("/api/v1/webhooks", json={"url": url, "events": ["send.started"]})
        assert answer.status_code == 422, answer.text
        assert count_rows(services, WebhookEndpoint) == 0

    def test_an_https_url_is_accepted(self, editor: TestClient) -> None:
        hook = register(editor, "https://hooks.example.com/mailer?source=news", ["send.started"])
        assert hook["url"] == "https://hooks.example.com/mailer?source=news"


# ---- HTTPS with the publisher's own certificate ---------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key: (certificate, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "hooks.pem", directory / "hooks.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


@pytest.fixture
def tls_receiver(certificate: tuple[Path, Path]) -> Iterator[Receiver]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server = Receiver(tls=context)
    yield server
    server.stop()


def test_an_https_endpoint_with_its_own_certificate_is_trusted_through_ca_file(
    settings: config.Settings,
    clock: FrozenClock,
    certificate: tuple[Path, Path],
    tls_receiver: Receiver,
) -> None:
    untrusting = build(settings, clock=clock)
    try:
        add_endpoint(untrusting, tls_receiver.url, ["send.finished"])
        emit_ping_like(untrusting, WebhookEvent.send_finished, {"send_id": 3})
        assert deliver_due(untrusting) == 1
        with session_scope(untrusting.engine) as session:
            [attempt] = session.exec(select(WebhookAttempt)).all()
        assert attempt.status_code is None
        assert attempt.error == "could not connect: the server's TLS certificate is not trusted"
    finally:
        untrusting.engine.dispose()
    assert tls_receiver.requests == []

    trusting_settings = settings.model_copy(
        update={"webhooks": settings.webhooks.model_copy(update={"ca_file": str(certificate[0])})}
    )
    trusting = build(trusting_settings, clock=clock)
    try:
        clock.advance(hours=1)
        assert deliver_due(trusting) == 1
        with session_scope(trusting.engine) as session:
            delivery = session.exec(select(WebhookDelivery)).one()
            secret = session.exec(select(WebhookEndpoint.secret)).one()
    finally:
        trusting.engine.dispose()
    [request] = tls_receiver.requests
    assert delivery.status == "delivered"
    assert verified(request, secret, clock)
    assert request.payload["data"] == {"send_id": 3}


# ---- the command line -----------------------------------------------------------------


@pytest.mark.both_databases
def test_webhooks_list_shows_endpoints_with_pending_and_failed_counts(
    services: Services, database_url: str, tmp_path: Path
) -> None:
    endpoint = add_endpoint(services, "http://127.0.0.1:9/x", ["send.finished"])
    emit_ping_like(services, WebhookEvent.send_finished, {"send_id": 1})
    emit_ping_like(services, WebhookEvent.send_finished, {"send_id": 2})
    with session_scope(services.engine) as session:
        first = session.exec(select(WebhookDelivery).order_by(col(WebhookDelivery.id))).first()
        assert first is not None
        first.status = "failed"
        session.add(first)

    script = Path(sys.executable).with_name("mailer")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "mailer.cli"]
    env = {"MAILER_DATABASE__URL": database_url, "MAILER_SECRET_KEY": SECRET, "PATH": "/usr/bin"}
    listed = subprocess.run(
        [*command, "webhooks", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    line = listed.stdout.strip()
    assert line.startswith(f"{endpoint.id}\tenabled\thttp://127.0.0.1:9/x\tsend.finished")
    assert "pending: 1" in line and "failed: 1" in line

    retried = subprocess.run(
        [*command, "webhooks", "retry", str(endpoint.id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert retried.returncode == 0, retried.stderr
    assert "1 failed deliveries queued again" in retried.stdout
    assert count_rows(services, WebhookDelivery) == 2
    unknown = subprocess.run(
        [*command, "webhooks", "retry", "999"], env=env, capture_output=True, text=True, timeout=60
    )
    assert unknown.returncode == 2
    assert "no webhook endpoint 999" in unknown.stderr and "Traceback" not in unknown.stderr


# ---- several workers, imports ---------------------------------------------------------


@pytest.mark.both_databases
def test_a_delivery_held_by_a_worker_that_died_is_taken_over_when_its_lease_ends(
    services: Services, receiver: Receiver, clock: FrozenClock
) -> None:
    add_endpoint(services, receiver.url, ["subscriber.created"])
    emit_ping_like(services, WebhookEvent.subscriber_created, {"subscriber_id": 5})
    with session_scope(services.engine) as session:
        [held] = queue.claim_due(session, clock.now(), 10, services.webhooks.lease)
    # That worker never reports back.
    assert deliver_due(services) == 0
    clock.advance(seconds=services.webhooks.lease.total_seconds() + 1)
    assert deliver_due(services) == 1
    [request] = receiver.requests
    assert request.payload["id"] == held.delivery_id
    with session_scope(services.engine) as session:
        delivery = session.exec(select(WebhookDelivery)).one()
    assert delivery.status == "delivered" and delivery.attempts == 2


@pytest.mark.parametrize("db_kind", ["postgresql"])  # SQLite has one writer at a time
def test_two_workers_on_postgresql_never_claim_the_same_delivery(
    services: Services, clock: FrozenClock
) -> None:
    add_endpoint(services, "http://127.0.0.1:9/x", ["send.started"])
    for n in range(5):
        emit_ping_like(services, WebhookEvent.send_started, {"send_id": n})
    lease = services.webhooks.lease
    with session_scope(services.engine) as first, session_scope(services.engine) as second:
        taken_first = queue.claim_due(first, clock.now(), 3, lease)
        taken_second = queue.claim_due(second, clock.now(), 10, lease)
    first_ids = {c.delivery_id for c in taken_first}
    second_ids = {c.delivery_id for c in taken_second}
    assert len(first_ids) == 3 and len(second_ids) == 2
    assert not first_ids & second_ids


@pytest.mark.both_databases
def test_an_import_reports_each_new_reader(
    services: Services, receiver: Receiver, clock: FrozenClock
) -> None:
    hook = add_endpoint(services, receiver.url, ["subscriber.created"])
    lines = ["email,name\n", "ada@example.com,Ada\n", "not-an-address,X\n", "ben@example.org,\n"]
    report = transfer.import_csv(services.engine, lines, "news", "crm.csv", clock.now)
    assert report.imported == 2

    assert deliver_due(services) == 2
    received = [r.payload["data"] for r in receiver.requests]
    assert [d["email"] for d in received] == ["ada@example.com", "ben@example.org"]
    assert all(d["status"] == "confirmed" and d["source"] == "import" for d in received)
    assert all(d["lists"] == ["news"] for d in received)
    assert all(verified(r, hook.secret, clock) for r in receiver.requests)


# ---- personal data ----------------------------------------------------------------------


@pytest.mark.both_databases
def test_erasing_a_reader_removes_their_address_from_every_webhook_payload(
    editor: TestClient,
    services: Services,
    smtp: SmtpSink,
    receiver: Receiver,
    clock: FrozenClock,
) -> None:
    hook = register(editor, receiver.url, ["subscriber.created", "subscriber.confirmed"])
    editor.post("/subscribe", json={"email": READER})
    receiver.wait_for(1)
    receiver.replies.append(500)
    editor.post(link_in(smtp.wait_for(1)[-1].message, "/confirm/"))
    receiver.wait_for(2)
    sent, waiting = wait_until_settled(editor, hook["id"])[::-1]
    assert sent["status"] == "delivered" and waiting["status"] == "pending"
    [subscriber] = editor.get("/api/v1/subscribers", params={"email": READER}).json()

    erased = editor.post(f"/api/v1/subscribers/{subscriber['id']}/erase")
    assert erased.status_code == 200, erased.text
    stored = [d["payload"]["data"]["email"] for d in deliveries(editor, hook["id"])]
    assert len(stored) == 2 and all(e.endswith("@erased.invalid") for e in stored)
    with session_scope(services.engine) as session:
        assert all(READER not in p for p in session.exec(select(WebhookDelivery.payload)))

    clock.advance(hours=1)
    retried = receiver.wait_for(3)[2]
    assert retried.event == "subscriber.confirmed"
    assert READER.encode() not in retried.body
    assert retried.payload["data"]["subscriber_id"] == subscriber["id"]
    assert verified(retried, hook["secret"], clock), "signed as sent, after the rewrite"


@pytest.mark.both_databases
def test_old_deliveries_are_purged_but_pending_ones_stay(
    services: Services, receiver: Receiver, clock: FrozenClock
) -> None:
    from mailer.jobs import purge_job

    add_endpoint(services, receiver.url, ["send.finished"])
    emit_ping_like(services, WebhookEvent.send_finished, {"send_id": 1})
    assert deliver_due(services) == 1
    receiver.replies.extend([500] * 10)
    emit_ping_like(services, WebhookEvent.send_finished, {"send_id": 2})
    assert deliver_due(services) == 1

    clock.advance(days=services.settings.webhooks.keep_days - 1)
    purge_job(services)
    assert count_rows(services, WebhookDelivery) == 2
    clock.advance(days=2)
    purge_job(services)
    with session_scope(services.engine) as session:
        [left] = session.exec(select(WebhookDelivery)).all()
    assert left.status == "pending" and json.loads(left.payload)["data"] == {"send_id": 2}
    assert count_rows(services, WebhookAttempt) == 1, "the delivered one's try went with it"
