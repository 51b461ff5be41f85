"""Leaving: RFC 8058 one-click unsubscribe, and the preference centre behind the same link.

The unsubscribe requests here go out with no cookie and no API key, as a mail provider's
would; the editors' API is only used, with its own key, to look at the result.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailer.clock import FrozenClock
from mailer.models import ConsentEvent, OutboxMessage
from mailer.services import Services
from mailer.tokens import Purpose
from tests.conftest import SmtpSink, count_rows, link_in, outbox_idle
from tests.factories import READER, confirmed_reader_id

MAIL_CLIENT = "ExampleMail-OneClick/1.0"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}

Lookup = Callable[..., dict[str, Any]]


@pytest.fixture
def lookup(client: TestClient, api_key: str) -> Lookup:
    """The reader as the editors' API shows them (the key goes on this request only)."""

    def find(email: str = READER) -> dict[str, Any]:
        answer = client.get(
            "/api/v1/subscribers",
            params={"email": email},
            headers={"Authorization": f"Bearer {api_key}"},
        )
        assert answer.status_code == 200
        [found] = answer.json()
        return dict(found)

    return find


@pytest.fixture
def sport(client: TestClient, api_key: str) -> int:
    """A second list, Sport, and a form `both` offering News and Sport; the list's id."""
    auth = {"Authorization": f"Bearer {api_key}"}
    created = client.post(
        "/api/v1/lists", json={"slug": "sport", "name": "Sport Weekly"}, headers=auth
    )
    assert created.status_code == 201
    form = client.post(
        "/api/v1/forms",
        json={"slug": "both", "lists": ["news", "sport"], "consent_text": "News and sport."},
        headers=auth,
    )
    assert form.status_code == 201
    return int(created.json()["id"])


def statuses(subscriber: dict[str, Any]) -> dict[str, str]:
    return {item["slug"]: item["status"] for item in subscriber["lists"]}


def actions(subscriber: dict[str, Any]) -> list[str]:
    return [event["action"] for event in subscriber["consent_events"]]


def unsubscribe_path(services: Services, subscriber_id: int, list_id: int | None = None) -> str:
    data = {"s": subscriber_id} if list_id is None else {"s": subscriber_id, "l": list_id}
    return "/unsubscribe/" + services.signer.sign(Purpose.unsubscribe, data)


def one_click(client: TestClient, path: str, encoding: str = "urlencoded") -> Any:
    """The POST a mail provider makes for RFC 8058, in either encoding it may use."""
    body: dict[str, Any] = (
        {"data": ONE_CLICK}
        if encoding == "urlencoded"
        else {"files": {name: (None, value) for name, value in ONE_CLICK.items()}}
    )
    return client.post(path, headers={"User-Agent": MAIL_CLIENT}, follow_redirects=False, **body)


# ---- one-click -------------------------------------------------------------------------


@pytest.mark.both_databases
@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_unsubscribes_at_once_with_a_plain_200(
    client: TestClient, services: Services, smtp: SmtpSink, lookup: Lookup, encoding: str
) -> None:
    path = unsubscribe_path(services, confirmed_reader_id(client, smtp, services))
    client.cookies.clear()
    assert "authorization" not in client.headers

    answer = one_click(client, path, encoding)

    assert answer.status_code == 200, "RFC 8058: a 2xx answer, not a redirect"
    assert "location" not in answer.headers
    assert "set-cookie" not in answer.headers
    assert "You have been unsubscribed" in answer.text
    assert answer.request.headers.get("cookie") is None
    assert statuses(lookup()) == {"news": "unsubscribed"}


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click_is_idempotent(
    client: TestClient, services: Services, smtp: SmtpSink, lookup: Lookup, encoding: str
) -> None:
    path = unsubscribe_path(services, confirmed_reader_id(client, smtp, services))
    assert one_click(client, path, encoding).status_code == 200
    events = count_rows(services, ConsentEvent)

    again = one_click(client, path, encoding)

    assert again.status_code == 200
    assert count_rows(services, ConsentEvent) == events
    assert actions(lookup()) == ["requested", "confirmed", "unsubscribed"]
    assert statuses(lookup()) == {"news": "unsubscribed"}


@pytest.mark.both_databases
def test_leaving_is_recorded_with_the_ip_and_user_agent(
    client: TestClient, services: Services, smtp: SmtpSink, lookup: Lookup, clock: FrozenClock
) -> None:
    path = unsubscribe_path(services, confirmed_reader_id(client, smtp, services))
    clock.advance(minutes=10)
    one_click(client, path)

    event = lookup()["consent_events"][-1]
    assert event["action"] == "unsubscribed"
    assert event["lists"] == ["news"]
    assert event["ip"] == "203.0.113.7"
    assert event["user_agent"] == MAIL_CLIENT
    assert event["at"].startswith(clock.now().date().isoformat())


def test_a_get_never_unsubscribes(
    client: TestClient, services: Services, smtp: SmtpSink, lookup: Lookup
) -> None:
    path = unsubscribe_path(services, confirmed_reader_id(client, smtp, services))
    events = count_rows(services, ConsentEvent)

    for _ in range(2):  # a link scanner, then the reader
        page = client.get(path, headers={"User-Agent": "LinkScanner/1.0"})
        assert page.status_code == 200
        assert 'id="unsubscribe-button"' in page.text
        assert 'name="List-Unsubscribe" value="One-Click"' in page.text

    assert statuses(lookup()) == {"news": "confirmed"}
    assert count_rows(services, ConsentEvent) == events


@pytest.mark.both_databases
def test_a_token_for_one_list_leaves_that_list_only(
    client: TestClient, services: Services, smtp: SmtpSink, lookup: Lookup, sport: int
) -> None:
    subscriber_id = confirmed_reader_id(client, smtp, services, form="both")
    assert statuses(lookup()) == {"news": "confirmed", "sport": "confirmed"}

    answer = one_click(client, unsubscribe_path(services, subscriber_id, sport))

    assert answer.status_code == 200
    assert "Sport Weekly" in answer.text
    assert statuses(lookup()) == {"news": "confirmed", "sport": "unsubscribed"}
    assert lookup()["consent_events"][-1]["lists"] == ["sport"]


def test_a_token_for_a_list_never_joined_changes_nothing(
    client: TestClient, services: Services, smtp: SmtpSink, lookup: Lookup, sport: int
) -> None:
    subscriber_id = confirmed_reader_id(client, smtp, services)
    events = count_rows(services, ConsentEvent)

    assert one_click(client, unsubscribe_path(services, subscriber_id, sport)).status_code == 200

    assert statuses(lookup()) == {"news": "confirmed"}
    assert count_rows(services, ConsentEvent) == events


@pytest.mark.both_databases
def test_leaving_while_pending_voids_the_confirm_link(
    client: TestClient, services: Services, smtp: SmtpSink, lookup: Lookup
) -> None:
    client.post("/subscribe", json={"email": READER})
    [mail] = smtp.wait_for(1)

    assert one_click(client, unsubscribe_path(services, int(lookup()["id"]))).status_code == 200

    assert client.post(link_in(mail.message, "/confirm/")).status_code == 410
    assert statuses(lookup()) == {"news": "unsubscribed"}


# ---- the preference centre -------------------------------------------------------------


def save_preferences(client: TestClient, path: str, lists: list[str]) -> Any:
    return client.post(
        path,
        data={"action": "preferences", "lists": lists},
        headers={"User-Agent": "Browser/1.0"},
    )


def test_the_preference_centre_shows_each_list_ticked_as_subscribed(
    client: TestClient, services: Services, smtp: SmtpSink, lookup: Lookup, sport: int
) -> None:
    path = unsubscribe_path(services, confirmed_reader_id(client, smtp, services, form="both"))
    one_click(client, unsubscribe_path(services, int(lookup()["id"]), sport))

    page = client.get(path).text

    boxes = re.findall(r'<input type="checkbox" name="lists" value="([a-z-]+)"([^>]*)>', page)
    assert {slug: "checked" in rest for slug, rest in boxes} == {"news": True, "sport": False}
    assert "(unsubscribed)" in page


@pytest.mark.both_databases
def test_unticked_lists_are_left_at_once(
    client: TestClient, services: Services, smtp: SmtpSink, lookup: Lookup, sport: int
) -> None:
    path = unsubscribe_path(services, confirmed_reader_id(client, smtp, services, form="both"))

    answer = save_preferences(client, path, ["news"])

    assert answer.status_code == 200
    assert "You left Sport Weekly" in answer.text
    subscriber = lookup()
    assert statuses(subscriber) == {"news": "confirmed", "sport": "unsubscribed"}
    event = subscriber["consent_events"][-1]
    assert (event["action"], event["lists"], event["form"]) == (
        "unsubscribed",
        ["sport"],
        "preferences",
    )
    assert event["user_agent"] == "Browser/1.0"


def test_unticking_every_list_leaves_them_all(
    client: TestClient, services: Services, smtp: SmtpSink, lookup: Lookup, sport: int
) -> None:
    path = unsubscribe_path(services, confirmed_reader_id(client, smtp, services, form="both"))

    assert save_preferences(client, path, []).status_code == 200

    assert statuses(lookup()) == {"news": "unsubscribed", "sport": "unsubscribed"}
    assert lookup()["consent_events"][-1]["lists"] == ["news", "sport"]


@pytest.mark.both_databases
def test_ticking_a_list_the_reader_left_asks_for_a_new_confirmation(
    client: TestClient,
    services: Services,
    smtp: SmtpSink,
    lookup: Lookup,
    clock: FrozenClock,
    sport: int,
) -> None:
    path = unsubscribe_path(services, confirmed_reader_id(client, smtp, services, form="both"))
    save_preferences(client, path, ["news"])
    clock.advance(minutes=61)  # past the one-confirmation-mail-per-window limit

    answer = save_preferences(client, path, ["news", "sport"])

    assert answer.status_code == 200
    assert "We have sent you an email to confirm Sport Weekly" in answer.text
    [_, mail] = smtp.wait_for(2)
    assert mail.rcpt_tos == [READER]
    assert "Sport Weekly" in mail.message["Subject"] and "News" not in mail.message["Subject"]
    subscriber = lookup()
    assert statuses(subscriber) == {"news": "confirmed", "sport": "unsubscribed"}, (
        "nobody comes back without using the new link"
    )
    requested = subscriber["consent_events"][-1]
    assert (requested["action"], requested["lists"], requested["form"]) == (
        "requested",
        ["sport"],
        "preferences",
    )

    assert client.post(link_in(mail.message, "/confirm/")).status_code == 200
    subscriber = lookup()
    assert statuses(subscriber) == {"news": "confirmed", "sport": "confirmed"}
    assert subscriber["consent_events"][-1]["action"] == "resubscribed"
    assert subscriber["consent_events"][-1]["lists"] == ["sport"]
    assert subscriber["consent_events"][-1]["form"] == "preferences"
    assert subscriber["consent_events"][-1]["consent_text"] == requested["consent_text"], (
        "the confirmation records the wording the reader agreed to"
    )


def test_ticking_a_left_list_within_the_mail_window_mails_when_the_window_ends(
    client: TestClient,
    services: Services,
    smtp: SmtpSink,
    lookup: Lookup,
    clock: FrozenClock,
) -> None:
    path = unsubscribe_path(services, confirmed_reader_id(client, smtp, services))
    one_click(client, path)

    save_preferences(client, path, ["news"])
    outbox_idle(services)
    assert len(smtp.messages) == 1, "one confirmation mail per window"
    assert statuses(lookup()) == {"news": "unsubscribed"}

    clock.advance(minutes=61)
    [_, mail] = smtp.wait_for(2)
    client.post(link_in(mail.message, "/confirm/"))
    assert statuses(lookup()) == {"news": "confirmed"}


def test_an_unknown_list_in_preferences_is_refused_and_nothing_is_written(
    client: TestClient, services: Services, smtp: SmtpSink, lookup: Lookup, sport: int
) -> None:
    path = unsubscribe_path(services, confirmed_reader_id(client, smtp, services, form="both"))
    outbox_idle(services)
    events = count_rows(services, ConsentEvent)
    mails = count_rows(services, OutboxMessage)

    # Sport unticked (would be left) and a list that does not exist: all or nothing.
    answer = save_preferences(client, path, ["news", "no-such-list"])

    assert 400 <= answer.status_code < 500
    assert "no-such-list" in answer.text
    assert statuses(lookup()) == {"news": "confirmed", "sport": "confirmed"}
    assert count_rows(services, ConsentEvent) == events
    assert count_rows(services, OutboxMessage) == mails


# ---- links that are not ours -----------------------------------------------------------


def test_forged_and_foreign_tokens_are_404(
    client: TestClient, services: Services, smtp: SmtpSink, lookup: Lookup
) -> None:
    real = unsubscribe_path(services, confirmed_reader_id(client, smtp, services))
    events = count_rows(services, ConsentEvent)
    forged = [
        real[:-1] + ("A" if real[-1] != "A" else "B"),
        "/unsubscribe/garbage",
        "/unsubscribe/x.y",
        "/unsubscribe/" + services.signer.sign(Purpose.confirm, {"s": int(lookup()["id"])}),
        "/unsubscribe/" + services.signer.sign(Purpose.unsubscribe, {"s": "1"}),
        "/unsubscribe/" + services.signer.sign(Purpose.unsubscribe, {"s": 1, "l": "news"}),
        unsubscribe_path(services, 999_999),
    ]
    for path in forged:
        assert one_click(client, path).status_code == 404, path
        assert save_preferences(client, path, []).status_code == 404, path
        assert client.get(path).status_code == 404, path
    assert statuses(lookup()) == {"news": "confirmed"}
    assert count_rows(services, ConsentEvent) == events
