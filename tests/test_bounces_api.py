"""GET /api/v1/bounces: editors see what receivers reported, policy alerts and complaints
included, newest first."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from mailer.bounces.handling import Report, handle
from mailer.clock import FrozenClock
from mailer.db import session_scope
from mailer.models import UserRole
from mailer.services import Services
from mailer.subscriptions import stats, transfer
from tests.admin import EDITOR, add_account, sign_in

HARD = "hanna.hard@example.com"
POLICY = "paul.policy@example.com"
COMPLAINING = "clara.complaint@example.com"


def reports_over_three_days(services: Services, clock: FrozenClock) -> list[datetime]:
    """A hard bounce, then a policy refusal a day later, then a complaint; their times."""
    csv = io.StringIO(f"email\n{HARD}\n{POLICY}\n{COMPLAINING}\n")
    transfer.import_csv(services.engine, csv, "news", "test", clock.now)
    times = []
    for report in (
        Report("dsn", "5.1.1", detail=f"550 5.1.1 <{HARD}>: user unknown", address=HARD),
        Report("ses", "5.7.26", detail="550 5.7.26 unauthenticated mail", address=POLICY),
        Report("postmark", action="abuse", complaint=True, address=COMPLAINING),
    ):
        with session_scope(services.engine) as session:
            handle(session, report, services.settings.bounces, clock.now())
        times.append(clock.now())
        clock.advance(days=1)
    return times


def test_events_come_newest_first_with_their_fields(
    editor: TestClient, services: Services, clock: FrozenClock
) -> None:
    reports_over_three_days(services, clock)
    answer = editor.get("/api/v1/bounces")
    assert answer.status_code == 200, answer.text
    events = answer.json()
    assert [(e["kind"], e["source"], e["status"]) for e in events] == [
        ("complaint", "postmark", ""),
        ("policy", "ses", "5.7.26"),
        ("hard", "dsn", "5.1.1"),
    ]
    assert set(events[0]) == {
        "id",
        "at",
        "kind",
        "status",
        "action",
        "source",
        "outbox_id",
        "subscriber_id",
        "detail",
    }
    assert HARD not in events[2]["detail"]
    assert events[2]["subscriber_id"] is not None


def test_operator_alerts_are_found_by_kind(
    editor: TestClient, services: Services, clock: FrozenClock
) -> None:
    reports_over_three_days(services, clock)
    [policy] = editor.get("/api/v1/bounces", params={"kind": "policy"}).json()
    assert policy["status"] == "5.7.26"
    assert editor.get("/api/v1/bounces", params={"kind": "soft"}).json() == []


@pytest.mark.both_databases
def test_since_and_limit_narrow_the_list(
    editor: TestClient, services: Services, clock: FrozenClock
) -> None:
    times = reports_over_three_days(services, clock)
    since = times[1].astimezone(UTC).isoformat()
    recent = editor.get("/api/v1/bounces", params={"since": since}).json()
    assert [e["kind"] for e in recent] == ["complaint", "policy"]
    assert datetime.fromisoformat(recent[1]["at"]) == times[1]
    [newest] = editor.get("/api/v1/bounces", params={"limit": 1}).json()
    assert newest["kind"] == "complaint"


def test_bad_filters_are_422_and_no_key_is_401(client: TestClient, editor: TestClient) -> None:
    assert editor.get("/api/v1/bounces", params={"kind": "bogus"}).status_code == 422
    assert editor.get("/api/v1/bounces", params={"since": "yesterday"}).status_code == 422
    assert editor.get("/api/v1/bounces", params={"limit": 0}).status_code == 422
    del editor.headers["Authorization"]
    assert client.get("/api/v1/bounces").status_code == 401


@pytest.mark.both_databases
def test_the_dashboard_counts_the_last_30_days_by_kind(
    editor: TestClient, editor_account: None, services: Services, clock: FrozenClock
) -> None:
    reports_over_three_days(services, clock)
    with session_scope(services.engine) as session:
        assert stats.bounces_by_kind(session, clock.now()) == {
            "hard": 1,
            "soft": 0,
            "policy": 1,
            "complaint": 1,
        }
        # Thirty days after the hard bounce's day it is out of the period; the others not.
        clock.advance(days=27)
        assert stats.bounces_by_kind(session, clock.now())["hard"] == 0
    assert sign_in(editor).status_code == 303
    page = editor.get("/admin/dashboard")
    assert page.status_code == 200
    section = page.text.split('id="bounces-heading"', 1)[1].split("</section>", 1)[0]
    figures = re.findall(r'<p class="figure">(\d+)</p>', section)
    assert figures == ["0", "0", "1", "1"]


def test_one_subscribers_events_are_listed_and_shown_on_their_page(
    editor: TestClient, client: TestClient, services: Services, clock: FrozenClock
) -> None:
    reports_over_three_days(services, clock)
    [reader] = editor.get("/api/v1/subscribers", params={"email": HARD}).json()
    [event] = editor.get("/api/v1/bounces", params={"subscriber_id": reader["id"]}).json()
    assert (event["kind"], event["status"]) == ("hard", "5.1.1")

    with session_scope(services.engine) as session:
        add_account(session, EDITOR, UserRole.editor, clock.now())
    assert sign_in(client).status_code == 303
    page = client.get(f"/admin/subscribers/{reader['id']}").text
    table = page.split("<h2>Bounces and complaints</h2>", 1)[1].split("</table>", 1)[0]
    assert "hard" in table and "5.1.1" in table and "dsn" in table
    assert "user unknown" in table and HARD not in table, "the receiver's words, no address"
    [other] = editor.get("/api/v1/subscribers", params={"email": POLICY}).json()
    assert "5.1.1" not in client.get(f"/admin/subscribers/{other['id']}").text
