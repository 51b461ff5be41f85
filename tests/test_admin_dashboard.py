"""The dashboard: confirmed subscribers per list at the end of each day (from the consent
ledger), signups and unsubscribes per day, the last and next sends, and the totals.

Readers sign up, confirm and leave through the public routes on different days (the
frozen clock moves); the numbers are read back from the stats module and from the page."""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from mailer import apikeys
from mailer.clock import FrozenClock
from mailer.db import session_scope
from mailer.models import Digest, MailingList, Send, SendStatus
from mailer.services import Services
from mailer.subscriptions import stats
from mailer.subscriptions.erasure import find_by_email
from mailer.tokens import Purpose
from mailer.web.admin import charts
from tests.conftest import SmtpSink, link_in

pytestmark = pytest.mark.both_databases
"""The stats bucket days in each dialect's own SQL: both databases."""

TODAY = date(2026, 3, 31)
NOW = datetime(2026, 3, 31, 15, 0, tzinfo=UTC)
EDITOR = "editor@example.org"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW - timedelta(days=40))


def at_day(clock: FrozenClock, days_ago: int, hour: int = 10) -> None:
    """Move the clock (forward only) to `hour` UTC, `days_ago` days before TODAY."""
    target = datetime.combine(TODAY - timedelta(days=days_ago), datetime.min.time(), UTC)
    target += timedelta(hours=hour)
    assert target >= clock.now()
    clock.current = target


def subscribe(client: TestClient, smtp: SmtpSink, email: str, form: str = "default") -> str:
    """Sign up through the public form; the confirm link's path from the mail."""
    before = len(smtp.to(email))
    assert client.post("/subscribe", json={"email": email, "form": form}).status_code == 202
    # Wait for this reader's own mail: an earlier reader's welcome may still be arriving.
    deadline = time.monotonic() + 10
    while len(smtp.to(email)) <= before:
        assert time.monotonic() < deadline, f"no confirmation mail for {email}"
        time.sleep(0.02)
    return link_in(smtp.to(email)[-1].message, "/confirm/")


def confirm(client: TestClient, path: str) -> None:
    assert client.post(path).status_code == 200


def leave(client: TestClient, services: Services, email: str, list_slug: str | None) -> None:
    """One-click unsubscribe from one list (or all), as a mail provider would post it."""
    with session_scope(services.engine) as session:
        subscriber = find_by_email(session, email)
        assert subscriber is not None
        data: dict[str, int] = {"s": subscriber.id or 0}
        if list_slug:
            found = session.exec(
                select(MailingList).where(col(MailingList.slug) == list_slug)
            ).one()
            data["l"] = found.id or 0
    path = "/unsubscribe/" + services.signer.sign(Purpose.unsubscribe, data)
    answer = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200


@pytest.fixture
def history(client: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock) -> None:
    """News and Sport Weekly over 40 days:
    alice confirms News 40 days ago and stays; bob confirms News 35 days ago and leaves
    5 days ago; carol asks for both lists 3 days ago, confirms 2 days ago and leaves Sport
    today; dave asks for News yesterday and never confirms."""
    with session_scope(services.engine) as session:
        key = apikeys.create(session, "setup", clock.now())
    auth = {"Authorization": f"Bearer {key}"}
    sport = client.post(
        "/api/v1/lists", json={"slug": "sport", "name": "Sport Weekly"}, headers=auth
    )
    assert sport.status_code == 201
    both = client.post(
        "/api/v1/forms",
        json={"slug": "both", "lists": ["news", "sport"], "consent_text": "News and sport."},
        headers=auth,
    )
    assert both.status_code == 201

    confirm(client, subscribe(client, smtp, "alice@example.com"))
    at_day(clock, 35)
    confirm(client, subscribe(client, smtp, "bob@example.com"))
    at_day(clock, 5)
    leave(client, services, "bob@example.com", None)
    at_day(clock, 3)
    carol = subscribe(client, smtp, "carol@example.com", form="both")
    at_day(clock, 2)
    confirm(client, carol)
    at_day(clock, 1)
    subscribe(client, smtp, "dave@example.com")
    at_day(clock, 0, hour=9)
    leave(client, services, "carol@example.com", "sport")
    clock.current = NOW


def news_name(services: Services) -> str:
    with session_scope(services.engine) as session:
        return session.exec(select(MailingList.name).where(col(MailingList.slug) == "news")).one()


def test_the_stats_replay_who_was_confirmed_at_the_end_of_each_day(
    history: None, services: Services
) -> None:
    with session_scope(services.engine) as session:
        series = {item.slug: item.counts for item in stats.confirmed_per_day(session, NOW)}
        activity = stats.activity_per_day(session, NOW)
        totals = stats.totals(session)

    assert len(series["news"]) == 30 and len(series["sport"]) == 30
    # index 29 is today; 24 is five days ago
    assert series["news"][:24] == [2] * 24, "alice and bob"
    assert series["news"][24:27] == [1, 1, 1], "bob left 5 days ago"
    assert series["news"][26] == 1, "carol asked 3 days ago but had not confirmed"
    assert series["news"][27:] == [2, 2, 2], "carol confirmed 2 days ago; dave never did"
    assert series["sport"][:27] == [0] * 27
    assert series["sport"][27:] == [1, 1, 0], "carol left Sport today"

    by_day = {item.day: (item.signups, item.unsubscribes) for item in activity}
    assert [item.day for item in activity][-1] == TODAY and len(activity) == 30
    assert by_day[TODAY - timedelta(days=5)] == (0, 1)
    assert by_day[TODAY - timedelta(days=3)] == (1, 0)
    assert by_day[TODAY - timedelta(days=1)] == (1, 0)
    assert by_day[TODAY] == (0, 1)
    assert sum(signups for signups, _ in by_day.values()) == 2, "older signups are outside"

    assert {item.name: item.confirmed for item in totals.confirmed_by_list} == {
        news_name(services): 2,
        "Sport Weekly": 0,
    }
    assert totals.pending == 1, "dave"
    assert totals.unsubscribed == 2, "bob from News, carol from Sport"


def test_the_numbers_a_day_ago_do_not_change_when_looking_later(
    history: None, services: Services
) -> None:
    with session_scope(services.engine) as session:
        today = {item.slug: item.counts for item in stats.confirmed_per_day(session, NOW)}
        earlier = {
            item.slug: item.counts
            for item in stats.confirmed_per_day(session, NOW - timedelta(days=3))
        }
    assert earlier["news"][-1] == today["news"][-4] == 1
    assert earlier["sport"] == [0] * 30, "carol's later confirmation is not seen before it"


def test_the_dashboard_draws_a_line_per_list_with_the_numbers_beside_it(
    history: None, signed_in: TestClient, services: Services
) -> None:
    page = signed_in.get("/admin/dashboard")
    assert page.status_code == 200
    html = page.text
    svg = html[html.index('<svg id="subscribers-chart"') : html.index("</svg>")]
    assert "<title" in svg and "<desc" in svg
    assert len(re.findall(r'<path class="series" d="M [\d. L]+"', svg)) == 2
    assert news_name(services) in svg and "Sport Weekly" in svg, "the legend names each list"
    assert "style=" not in html, "the CSP forbids style attributes"

    table = html[html.index('<table id="subscribers-table"') :]
    table = table[: table.index("</table>")]
    row = re.search(r"<th scope=\"row\">2026-03-29</th>(.*?)</tr>", table)
    assert row is not None
    assert re.findall(r"<td class=\"number\">(\d+)</td>", row.group(1)) == ["2", "1"]
    today_row = re.search(r"<th scope=\"row\">2026-03-31</th>(.*?)</tr>", table)
    assert today_row is not None
    assert re.findall(r"<td class=\"number\">(\d+)</td>", today_row.group(1)) == ["2", "0"]

    activity = html[html.index('<table id="activity-table"') :]
    assert re.search(
        r"2026-03-26</th><td class=\"number\">0</td><td class=\"number\">1</td>", activity
    )
    assert re.search(
        r"2026-03-28</th><td class=\"number\">1</td><td class=\"number\">0</td>", activity
    )
    assert "waiting for confirmation" in html


def test_the_dashboard_lists_the_last_sends_and_the_next_ones_in_their_time_zone(
    signed_in: TestClient, services: Services
) -> None:
    with session_scope(services.engine) as session:
        news = session.exec(select(MailingList)).first()
        assert news is not None and news.id is not None
        morning = Digest(
            list_id=news.id,
            name="Morning briefing",
            schedule="0 7 * * *",
            timezone="Europe/Berlin",
            next_run_at=datetime(2026, 4, 1, 5, 0, tzinfo=UTC),
            created_at=NOW,
            updated_at=NOW,
        )
        weekly = Digest(
            list_id=news.id,
            name="Weekly roundup",
            schedule="0 18 * * 5",
            timezone="America/New_York",
            next_run_at=datetime(2026, 4, 3, 22, 0, tzinfo=UTC),
            created_at=NOW,
            updated_at=NOW,
        )
        paused = Digest(
            list_id=news.id,
            name="Paused digest",
            schedule="0 9 * * *",
            enabled=False,
            next_run_at=datetime(2026, 4, 1, 1, 0, tzinfo=UTC),
            created_at=NOW,
            updated_at=NOW,
        )
        session.add_all([morning, weekly, paused])
        session.flush()
        for number in range(7):
            session.add(
                Send(
                    digest_id=morning.id,
                    list_id=news.id,
                    status=SendStatus.done,
                    scheduled_for=NOW - timedelta(days=7 - number),
                    window_start=NOW - timedelta(days=8 - number),
                    window_end=NOW - timedelta(days=7 - number),
                    subject=f"Morning briefing no. {number}",
                    total=40 + number,
                    created_at=NOW - timedelta(days=7 - number),
                )
            )

    html = signed_in.get("/admin/dashboard").text
    last = html[html.index('<table id="last-sends"') :]
    last = last[: last.index("</table>")]
    subjects = re.findall(r"Morning briefing no\. (\d)", last)
    assert subjects == ["6", "5", "4", "3", "2"], "the five most recent, newest first"
    assert re.search(r'<a href="/admin/sends/\d+">Morning briefing</a>', last)
    assert '<span class="badge done">done</span>' in last and "0 / 46" in last

    upcoming = html[html.index('<table id="next-sends"') :]
    upcoming = upcoming[: upcoming.index("</table>")]
    assert "Paused digest" not in upcoming
    assert upcoming.index("Morning briefing") < upcoming.index("Weekly roundup")
    assert "Wed 01 Apr 2026, 07:00" in upcoming and "Europe/Berlin" in upcoming
    assert "Fri 03 Apr 2026, 18:00" in upcoming and "America/New_York" in upcoming


def test_an_empty_axis_still_has_a_scale() -> None:
    assert charts.nice_ceiling(0) == (1, 1)
    assert charts.nice_ceiling(3) == (3, 1)
    assert charts.nice_ceiling(7) == (8, 2)
    assert charts.nice_ceiling(37) == (40, 10)
    assert charts.nice_ceiling(1234) == (1500, 500)
    days = stats.period(NOW, 3)
    chart = charts.line_chart(days, [("News", [0, 5, 10])])
    [line] = chart.lines
    assert line.path.startswith(f"M {chart.box.left:g} {chart.box.bottom:g} L ")
    assert line.path.endswith(f" L {chart.box.right:g} {chart.box.top:g}"), (
        "10 is the top of the axis"
    )
