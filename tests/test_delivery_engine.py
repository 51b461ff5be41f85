"""The delivery engine against real SMTP servers: pooled connections, several relays with
failover, the rate, window and per-domain limits, slowing down on 421, suppression after
5.1.x, the attempts kept for editors, and the maximum age of a retried message."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import col, select

from mailer.clock import SystemClock
from mailer.config import SenderSettings
from mailer.db import session_scope
from mailer.delivery.throttle import Throttle
from mailer.logs import JsonFormatter, redact
from mailer.models import OutboxMessage, Subscriber
from mailer.services import Services, build
from tests.conftest import SmtpSink, outbox_idle
from tests.factories import add_readers, send_digest, wait_attempts, wait_done


@pytest.fixture
def clock() -> SystemClock:  # type: ignore[override]
    """Real time: retries and limits play out as they would in production."""
    return SystemClock()


def most_in_any_window(times: list[float], seconds: float) -> int:
    """The largest number of these moments that fall within `seconds` of each other."""
    times = sorted(times)
    most, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= seconds:
            start += 1
        most = max(most, end - start + 1)
    return most


class SlowRecorder:
    """Accepts each message after a pause and tracks messages in flight per domain."""

    def __init__(self, sink: SmtpSink, pause: float) -> None:
        self.record = sink.handler.handle_DATA
        self.pause = pause
        self.in_flight: Counter[str] = Counter()
        self.most_in_flight: Counter[str] = Counter()
        self.most_overall = 0

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        domain = envelope.rcpt_tos[0].rpartition("@")[2]
        self.in_flight[domain] += 1
        self.most_in_flight[domain] = max(self.most_in_flight[domain], self.in_flight[domain])
        self.most_overall = max(self.most_overall, sum(self.in_flight.values()))
        try:
            await asyncio.sleep(self.pause)
            return await self.record(server, session, envelope)
        finally:
            self.in_flight[domain] -= 1


READERS = [f"reader{n}@example.com" for n in range(40)]


# ---- connections and relays -------------------------------------------------------------


@pytest.mark.parametrize(
    "settings_overrides", [{"smtp": {"connections": 3}, "sender": {"concurrency": 6}}]
)
def test_messages_share_a_few_persistent_connections(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    smtp.handler.handle_DATA = SlowRecorder(smtp, 0.02).handle_DATA  # type: ignore[method-assign]
    add_readers(services, READERS)
    state = wait_done(editor, send_digest(editor))
    assert (state["sent"], state["failed"]) == (len(READERS), 0)
    connections = Counter(message.peer for message in smtp.messages)
    assert 2 <= len(connections) <= 3, f"a pool of 3 connections, used in parallel: {connections}"
    assert sum(connections.values()) == len(READERS)


class TestFailover:
    @pytest.fixture
    def settings_overrides(self, second_relay: SmtpSink) -> dict[str, Any]:
        """A second relay, heavier than the first, that refuses connections."""
        second_relay.stop()
        return {
            "smtp": {"relays": [{"host": "127.0.0.1", "port": second_relay.port, "weight": 10}]}
        }

    def test_a_relay_that_refuses_connections_hands_its_share_to_the_other(
        self, editor: TestClient, services: Services, smtp: SmtpSink
    ) -> None:
        add_readers(services, READERS)
        send_id = send_digest(editor)
        state = wait_done(editor, send_id)
        assert (state["sent"], state["failed"]) == (len(READERS), 0)
        assert Counter(r for m in smtp.messages for r in m.rcpt_tos) == Counter(READERS)
        messages = editor.get(f"/api/v1/sends/{send_id}/messages", params={"limit": 100}).json()
        assert [len(m["attempts"]) for m in messages] == [1] * len(READERS), "none deferred"


def test_weights_share_the_messages_between_relays(
    services: Services, smtp: SmtpSink, second_relay: SmtpSink
) -> None:
    from mailer.config import RelaySettings
    from mailer.delivery.transport import SmtpTransport

    smtp_settings = services.settings.smtp.model_copy(
        update={
            "weight": 3,
            "relays": [RelaySettings(host="127.0.0.1", port=second_relay.port, weight=1)],
        }
    )
    transport = SmtpTransport(smtp_settings)

    async def send_all() -> None:
        for n in range(200):
            await transport.send("news@example.org", f"r{n}@example.com", b"Subject: x\r\n\r\nx")
        await transport.close()

    asyncio.run(send_all())
    first, second = len(smtp.messages), len(second_relay.messages)
    assert first + second == 200
    assert 0.6 <= first / 200 <= 0.9, f"weight 3 to 1 gave {first} to {second}"


# ---- limits -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings_overrides",
    [{"sender": {"rate_per_second": 20, "retry_base_seconds": 0.3, "recover_seconds": 0.5}}],
)
def test_a_relay_that_answers_421_then_recovers_gets_everything_through_within_the_rate(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    smtp.handler.data_replies.extend(["421 4.7.0 Too many messages, slow down"] * 3)
    add_readers(services, READERS)
    started = time.monotonic()
    send_id = send_digest(editor)
    state = wait_done(editor, send_id)
    assert (state["sent"], state["failed"]) == (len(READERS), 0)
    assert Counter(r for m in smtp.messages for r in m.rcpt_tos) == Counter(READERS), "once each"
    assert most_in_any_window([m.at for m in smtp.messages], 1.0) <= 21, "20 per second at most"
    assert time.monotonic() - started >= len(READERS) / 20 - 0.5
    assert services.sender.throttle.slowdowns >= 1, "the sender slowed down"

    messages = editor.get(f"/api/v1/sends/{send_id}/messages", params={"limit": 100}).json()
    retried = [m for m in messages if len(m["attempts"]) > 1]
    assert len(retried) == 3
    for message in retried:
        first, last = message["attempts"][0], message["attempts"][-1]
        assert first["outcome"] == "deferred" and first["reply"].startswith("421 4.7.0")
        assert last["outcome"] == "sent" and last["attempt"] == 2
    metrics = editor.get("/metrics").text
    assert "mailer_relay_slowdowns_total 3.0" in metrics


def test_the_slow_down_halves_the_rate_and_recovers_step_by_step() -> None:
    now = [100.0]
    throttle = Throttle(
        SenderSettings(rate_per_second=100, slowdown_factor=0.5, recover_seconds=10),
        monotonic=lambda: now[0],
    )
    assert throttle.rate() == 100
    assert throttle.slow_down()
    assert throttle.rate() == 50
    now[0] += 0.5
    assert not throttle.slow_down(), "the rest of a burst of 421s counts once"
    now[0] += 1
    throttle.slow_down()
    assert throttle.rate() == 25
    now[0] += 9.9
    assert throttle.rate() == 25
    now[0] += 0.2
    assert throttle.rate() == 50, "doubles after a quiet period"
    now[0] += 10
    assert throttle.rate() == 100
    now[0] += 1000
    assert throttle.rate() == 100, "back to the configured rate, no further"


@pytest.mark.both_databases
def test_the_limits_are_divided_among_live_senders(services: Services) -> None:
    settings = services.settings.model_copy(
        update={
            "sender": SenderSettings(rate_per_second=30, window_limit=600, per_domain_concurrency=4)
        }
    )
    first, second = build(settings), build(settings)
    try:
        first.sender.heartbeat_once()
        assert first.sender.throttle.rate() == 30
        second.sender.heartbeat_once()
        first.sender.heartbeat_once()
        for sender in (first.sender, second.sender):
            assert sender.throttle.rate() == 15
            assert sender.throttle.window_quota() == 300
        second.sender.leave()
        first.sender.heartbeat_once()
        assert first.sender.throttle.rate() == 30, "the one left takes the whole rate"
    finally:
        first.engine.dispose()
        second.engine.dispose()


@pytest.mark.parametrize(
    "settings_overrides",
    [{"sender": {"window_limit": 8, "window_seconds": 1.0, "batch_size": 50}}],
)
def test_a_sliding_window_limit_spreads_the_send(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    add_readers(services, READERS[:20])
    state = wait_done(editor, send_digest(editor))
    assert state["sent"] == 20
    times = [m.at for m in smtp.messages]
    assert most_in_any_window(times, 1.0) <= 8 + 1
    assert max(times) - min(times) >= 1.0, "20 messages at 8 per second take over a second"


@pytest.mark.parametrize(
    "settings_overrides",
    [{"sender": {"per_domain_concurrency": 1, "concurrency": 6}, "smtp": {"connections": 6}}],
)
def test_one_message_at_a_time_per_recipient_domain(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    recorder = SlowRecorder(smtp, 0.05)
    smtp.handler.handle_DATA = recorder.handle_DATA  # type: ignore[method-assign]
    readers = [f"a{n}@one.example" for n in range(8)] + [f"b{n}@two.example" for n in range(8)]
    add_readers(services, readers)
    state = wait_done(editor, send_digest(editor))
    assert state["sent"] == 16
    assert recorder.most_in_flight == {"one.example": 1, "two.example": 1}
    assert recorder.most_overall == 2, "the two domains still go in parallel"


# ---- outcomes ---------------------------------------------------------------------------


@pytest.mark.both_databases
def test_an_address_that_does_not_exist_is_suppressed_for_every_later_send(
    editor: TestClient, services: Services, smtp: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    gone, blocked = "gone@example.com", "policy@example.com"
    smtp.handler.replies[gone] = "550 5.1.1 <gone@example.com>: no such user"
    smtp.handler.replies[blocked] = "550 5.7.1 message refused by policy"
    add_readers(services, [*READERS[:3], gone, blocked])

    first = wait_done(editor, send_digest(editor, story=1))
    assert (first["sent"], first["failed"]) == (3, 2)
    [found] = editor.get("/api/v1/subscribers", params={"email": gone}).json()
    assert found["suppression"]["reason"] == "hard-bounce"
    assert "5.1.1" in found["suppression"]["detail"]
    [other] = editor.get("/api/v1/subscribers", params={"email": blocked}).json()
    assert other["suppression"] is None, "a policy refusal is not the address's fault"

    digest_id = int(editor.get(f"/api/v1/sends/{first['id']}").json()["digest_id"])
    del smtp.handler.replies[gone]  # even if the address came back, it is not tried again
    del smtp.handler.replies[blocked]
    second = wait_done(editor, send_digest(editor, story=2, digest_id=digest_id))
    assert second["total"] == 4, "the suppressed address is not among the recipients"
    assert smtp.to(gone) == []
    assert len(smtp.to(blocked)) == 1
    assert "mailer_mail_suppressed_total 1.0" in editor.get("/metrics").text
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("mailer"))
    assert "5.1.1 <[address]>: no such user" in ours, "the refusal is logged ..."
    assert "gone@example.com" not in ours, "... without the address"


def test_json_log_lines_carry_the_fields_and_no_addresses() -> None:
    record = logging.makeLogRecord(
        {
            "name": "mailer.delivery.sender",
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            "msg": "delivery failed: %s",
            "args": (redact("550 5.1.1 <ann.lee+news@example.co.uk>: unknown"),),
            "outbox_id": 7,
        }
    )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "delivery failed: 550 5.1.1 <[address]>: unknown"
    assert (entry["level"], entry["logger"], entry["outbox_id"]) == (
        "warning",
        "mailer.delivery.sender",
        7,
    )


@pytest.mark.both_databases
@pytest.mark.parametrize(
    "settings_overrides", [{"sender": {"max_age_hours": 1, "retry_base_seconds": 60}}]
)
def test_a_message_older_than_the_maximum_age_is_given_up_instead_of_retried(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    add_readers(services, ["late@example.com", "fresh@example.com"])
    smtp.handler.replies["late@example.com"] = "451 4.3.0 try later"
    smtp.handler.replies["fresh@example.com"] = "451 4.3.0 try later"
    send_id = send_digest(editor)
    wait_attempts(editor, send_id, {"late@example.com": 1, "fresh@example.com": 1})
    with session_scope(services.engine) as session:
        late = session.exec(select(Subscriber).where(Subscriber.email == "late@example.com")).one()
        now = services.clock.now()
        session.execute(
            update(OutboxMessage)
            .where(col(OutboxMessage.subscriber_id) == late.id)
            .values(created_at=now - timedelta(minutes=59), next_attempt_at=now)
        )
    services.sender.notify()
    messages = wait_attempts(editor, send_id, {"late@example.com": 2, "fresh@example.com": 1})
    assert messages["late@example.com"]["status"] == "failed"
    assert "given up" in messages["late@example.com"]["last_reply"]
    assert messages["fresh@example.com"]["status"] == "queued", "still young: retried later"
    assert messages["fresh@example.com"]["attempts"][0]["outcome"] == "deferred"
    assert [a["outcome"] for a in messages["late@example.com"]["attempts"]] == [
        "deferred",
        "failed",
    ]


@pytest.mark.both_databases
def test_the_messages_of_a_send_are_paged_and_need_a_key(
    editor: TestClient, client: TestClient, services: Services, smtp: SmtpSink
) -> None:
    add_readers(services, READERS[:5])
    send_id = send_digest(editor)
    wait_done(editor, send_id)
    first = editor.get(f"/api/v1/sends/{send_id}/messages", params={"limit": 2}).json()
    rest = editor.get(f"/api/v1/sends/{send_id}/messages", params={"after": first[-1]["id"]}).json()
    assert sorted(m["email"] for m in first + rest) == sorted(READERS[:5])
    assert all(m["attempts"][0]["reply"].startswith("250") for m in first + rest)
    assert editor.get("/api/v1/sends/999999/messages").status_code == 404
    assert editor.get(f"/api/v1/sends/{send_id}/messages?status=nonsense").status_code == 422
    del client.headers["Authorization"]
    assert client.get(f"/api/v1/sends/{send_id}/messages").status_code == 401


def test_each_message_goes_out_from_its_own_signed_bounce_address(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    add_readers(services, READERS[:3])
    send_id = send_digest(editor)
    wait_done(editor, send_id)
    row_of = {m["email"]: m["id"] for m in editor.get(f"/api/v1/sends/{send_id}/messages").json()}
    senders = set()
    for received in smtp.messages:
        local, _, domain = received.mail_from.partition("@")
        assert domain == "example.org" and local.startswith("bounces+"), received.mail_from
        tag = local.removeprefix("bounces+")
        assert services.signer.read_return_path_tag(tag) == row_of[received.rcpt_tos[0]]
        senders.add(received.mail_from)
        assert received.message["From"].addresses[0].addr_spec == "news@example.org"
    assert len(senders) == 3, "one bounce address per message"


@pytest.mark.both_databases
def test_a_suppressed_address_stays_suppressed_after_erasure_and_a_new_signup(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    gone = "gone@example.com"
    smtp.handler.replies[gone] = "550 5.1.1 <gone@example.com>: no such user"
    add_readers(services, [gone])
    wait_done(editor, send_digest(editor))
    [found] = editor.get("/api/v1/subscribers", params={"email": gone}).json()
    assert editor.post(f"/api/v1/subscribers/{found['id']}/erase").status_code == 200

    del smtp.handler.replies[gone]
    assert editor.post("/subscribe", json={"email": gone}).status_code == 202
    outbox_idle(services)
    time.sleep(0.3)
    assert smtp.to(gone) == [], "no confirmation mail to a suppressed address"
    with session_scope(services.engine) as session:
        [reason] = session.exec(
            select(OutboxMessage.last_reply).where(OutboxMessage.kind == "confirmation")
        ).all()
    assert reason == "address suppressed"


@pytest.mark.parametrize("smtp", [True], indirect=True)
def test_a_non_ascii_mailbox_goes_out_with_smtputf8_when_the_relay_offers_it(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    add_readers(services, ["jürgen@example.com", *READERS[:2]])
    state = wait_done(editor, send_digest(editor))
    assert (state["sent"], state["failed"]) == (3, 0)
    assert len(smtp.to("jürgen@example.com")) == 1


@pytest.mark.both_databases
def test_a_paused_send_does_not_hold_up_other_mail(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    add_readers(services, READERS)
    smtp.handler.replies.update({reader: "450 4.2.1 mailbox busy" for reader in READERS})
    send_id = send_digest(editor)
    wait_attempts(editor, send_id, dict.fromkeys(READERS, 1))
    assert editor.post(f"/api/v1/sends/{send_id}/pause").json()["status"] == "paused"
    smtp.handler.replies.clear()
    held = editor.get(f"/api/v1/sends/{send_id}/messages", params={"status": "held"}).json()
    assert len(held) == len(READERS), "the paused send's messages are held"

    assert editor.post("/subscribe", json={"email": "new@example.org"}).status_code == 202
    [confirmation] = smtp.wait_for(1)
    assert confirmation.rcpt_tos == ["new@example.org"], "other mail goes out meanwhile"
    assert editor.get(f"/api/v1/sends/{send_id}").json()["pending"] == len(READERS)

    assert editor.post(f"/api/v1/sends/{send_id}/resume").status_code == 200
    with session_scope(services.engine) as session:  # past the retry back-off, now
        session.execute(
            update(OutboxMessage)
            .where(col(OutboxMessage.send_id) == send_id)
            .values(next_attempt_at=services.clock.now())
        )
    services.sender.notify()
    state = wait_done(editor, send_id)
    assert (state["sent"], state["pending"]) == (len(READERS), 0)
