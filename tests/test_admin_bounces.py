"""Bounces at /admin/bounces: what receivers reported, newest first, narrowed by kind,
policy refusals standing out, the receiver's words without addresses, and a link to the
subscriber's page."""

from __future__ import annotations

import io
import re

import pytest
from fastapi.testclient import TestClient

from mailer.bounces.handling import Report, handle
from mailer.clock import FrozenClock
from mailer.db import session_scope
from mailer.services import Services
from mailer.subscriptions import transfer

HOME = "/admin/bounces"
HARD = "hanna.hard@example.com"
SOFT = "sam.soft@example.com"
POLICY = "paul.policy@example.com"
COMPLAINING = "clara.complaint@example.com"


@pytest.fixture
def reported(services: Services, clock: FrozenClock) -> None:
    """A hard bounce, a soft one, a policy refusal and a complaint, an hour apart."""
    csv = io.StringIO(f"email\n{HARD}\n{SOFT}\n{POLICY}\n{COMPLAINING}\n")
    transfer.import_csv(services.engine, csv, "news", "test", clock.now)
    for report in (
        Report("dsn", "5.1.1", detail=f"550 5.1.1 <{HARD}>: user unknown", address=HARD),
        Report("dsn", "4.2.2", "delayed", detail=f"452 4.2.2 {SOFT} is over quota", address=SOFT),
        Report("ses", "5.7.26", detail="550 5.7.26 unauthenticated mail", address=POLICY),
        Report("postmark", action="abuse", complaint=True, address=COMPLAINING),
    ):
        with session_scope(services.engine) as session:
            handle(session, report, services.settings.bounces, clock.now())
        clock.advance(hours=1)


def rows(page: str) -> list[str]:
    table = page.split('<table id="bounces">', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr class=\"kind-\w+\">.*?</tr>", table, re.S)


def test_events_are_listed_newest_first_with_what_the_receiver_said(
    signed_in: TestClient, reported: None
) -> None:
    page = signed_in.get(HOME)
    assert page.status_code == 200 and "no-store" in page.headers["cache-control"]
    listed = rows(page.text)
    kinds = [re.findall(r'<tr class="kind-(\w+)">', row) for row in listed]
    assert kinds == [["complaint"], ["policy"], ["soft"], ["hard"]]
    assert "5.1.1" in listed[3] and "dsn" in listed[3] and "user unknown" in listed[3]
    assert "4.2.2 · delayed" in listed[2] and "over quota" in listed[2]
    assert "ses" in listed[1] and "unauthenticated mail" in listed[1]
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", listed[0])
    for address in (HARD, SOFT, POLICY, COMPLAINING):
        assert address not in page.text, "the receiver's words are stored without addresses"
    assert "suppressed after 3 within 14 days" in page.text
    assert '<a href="/admin/bounces" aria-current="page">Bounces</a>' in page.text


def test_the_kind_filter_narrows_the_list(signed_in: TestClient, reported: None) -> None:
    [policy] = rows(signed_in.get(HOME, params={"kind": "policy"}).text)
    assert "5.7.26" in policy and 'class="badge kind-policy"' in policy
    [hard] = rows(signed_in.get(HOME, params={"kind": "hard"}).text)
    assert "5.1.1" in hard
    assert (
        '<a href="/admin/bounces?kind=hard" aria-current="page">'
        in signed_in.get(HOME, params={"kind": "hard"}).text
    )
    assert signed_in.get(HOME, params={"kind": "bogus"}).status_code == 422


def test_the_subscriber_link_goes_to_their_page(signed_in: TestClient, reported: None) -> None:
    hard = rows(signed_in.get(HOME, params={"kind": "hard"}).text)[0]
    link = re.search(r'href="(/admin/subscribers/\d+)"', hard)
    assert link, hard
    reader_page = signed_in.get(link.group(1))
    assert reader_page.status_code == 200 and HARD in reader_page.text


def test_an_empty_list_says_so(signed_in: TestClient) -> None:
    page = signed_in.get(HOME).text
    assert "Nothing recorded yet" in page and '<table id="bounces">' not in page


def test_not_signed_in_is_sent_to_the_sign_in_page(client: TestClient) -> None:
    answer = client.get(HOME, follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/"
