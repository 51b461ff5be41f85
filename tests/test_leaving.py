"""Leaving: RFC 8058 one-click unsubscribe and the preference centre."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from mailer.clock import FrozenClock
from mailer.models import ConsentEvent, Subscription
from mailer.services import Services
from mailer.tokens import Purpose
from tests.conftest import SmtpSink, count_rows, link_in, outbox_idle

READER = "reader@example.com"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def confirmed_reader(editor: TestClient, smtp: SmtpSink, form: str = "default") -> int:
    """Sign READER up through `form` and confirm; returns the subscriber id."""
    before = len(smtp.messages)
    assert editor.post("/subscribe", json={"email": READER, "form": form}).status_code == 202
    mail = smtp.wait_for(before + 1)[-1]
    assert editor.post(link_in(mail.message, "/confirm/")).status_code == 200
    return int(reader(editor)["id"])


def reader(editor: TestClient) -> dict[str, Any]:
    [found] = editor.get("/api/v1/subscribers", params={"email": READER}).json()
    return dict(found)


def statuses(editor: TestClient) -> dict[str, str]:
    return {item["slug"]: item["status"] for item in reader(editor)["lists"]}


def unsubscribe_path(services: Services, subscriber_id: int, list_id: int | None = None) -> str:
    data = {"s": subscriber_id} if list_id is None else {"s": subscriber_id, "l": list_id}
    return "/unsubscribe/" + services.signer.sign(Purpose.unsubscribe, data)


def test_one_click_post_unsubscribes_at_once_without_redirect(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    path = unsubscribe_path(services, confirmed_reader(editor, smtp))
    editor.cookies.clear()
    answer = editor.post(
        path,
        data=ONE_CLICK,
        follow_redirects=False,
        headers={"User-Agent": "MailClient/2.0", "Origin": "https://mail.example"},
    )
    assert answer.status_code == 200
    assert "set-cookie" not in answer.headers
    assert statuses(editor) == {"news": "unsubscribed"}
    last = reader(editor)["consent_events"][-1]
    assert last["action"] == "unsubscribed"
    assert last["lists"] == ["news"]
    assert last["user_agent"] == "MailClient/2.0"
    assert last["ip"] == "203.0.113.7"


def test_one_click_accepts_multipart_and_is_idempotent(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    path = unsubscribe_path(services, confirmed_reader(editor, smtp))
    multipart = {"List-Unsubscribe": (None, "One-Click")}
    assert editor.post(path, files=multipart, follow_redirects=False).status_code == 200
    events = count_rows(services, ConsentEvent)
    assert editor.post(path, files=multipart, follow_redirects=False).status_code == 200
    assert editor.post(path, data=ONE_CLICK, follow_redirects=False).status_code == 200
    assert count_rows(services, ConsentEvent) == events, "leaving twice records nothing new"
    assert statuses(editor) == {"news": "unsubscribed"}


def test_a_get_never_unsubscribes(editor: TestClient, services: Services, smtp: SmtpSink) -> None:
    path = unsubscribe_path(services, confirmed_reader(editor, smtp))
    page = editor.get(path)
    assert page.status_code == 200
    assert "Unsubscribe" in page.text and "Your newsletters" in page.text
    assert statuses(editor) == {"news": "confirmed"}


def test_a_list_bound_token_leaves_only_that_list(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    sport_id = editor.post("/api/v1/lists", json={"slug": "sport", "name": "Sport"}).json()["id"]
    editor.post(
        "/api/v1/forms",
        json={"slug": "both", "lists": ["news", "sport"], "consent_text": "Yes to both."},
    )
    subscriber_id = confirmed_reader(editor, smtp, form="both")
    answer = editor.post(unsubscribe_path(services, subscriber_id, sport_id), data=ONE_CLICK)
    assert answer.status_code == 200
    assert statuses(editor) == {"news": "confirmed", "sport": "unsubscribed"}


def test_preference_centre_leaves_unticked_lists_and_asks_to_confirm_a_return(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    editor.post("/api/v1/lists", json={"slug": "sport", "name": "Sport"})
    editor.post(
        "/api/v1/forms",
        json={"slug": "both", "lists": ["news", "sport"], "consent_text": "Yes to both."},
    )
    subscriber_id = confirmed_reader(editor, smtp, form="both")
    path = unsubscribe_path(services, subscriber_id)

    kept_news = editor.post(path, data={"action": "preferences", "lists": ["news"]})
    assert kept_news.status_code == 200
    assert statuses(editor) == {"news": "confirmed", "sport": "unsubscribed"}

    clock.advance(minutes=61)
    both = editor.post(path, data={"action": "preferences", "lists": ["news", "sport"]})
    assert both.status_code == 200
    assert "confirm" in both.text
    mail = smtp.wait_for(2)[-1]
    assert "Sport" in mail.message["Subject"]
    assert statuses(editor) == {"news": "confirmed", "sport": "unsubscribed"}, (
        "coming back needs the new confirmation"
    )
    editor.post(link_in(mail.message, "/confirm/"))
    assert statuses(editor) == {"news": "confirmed", "sport": "confirmed"}
    assert reader(editor)["consent_events"][-1]["action"] == "resubscribed"


def test_unknown_list_in_preferences_is_refused_and_changes_nothing(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    path = unsubscribe_path(services, confirmed_reader(editor, smtp))
    events = count_rows(services, ConsentEvent)
    answer = editor.post(path, data={"action": "preferences", "lists": ["no-such-list"]})
    assert answer.status_code == 422
    assert count_rows(services, ConsentEvent) == events
    assert statuses(editor) == {"news": "confirmed"}


def test_forged_unsubscribe_tokens_are_404(client: TestClient, services: Services) -> None:
    real = services.signer.sign(Purpose.unsubscribe, {"s": 1})
    forged = real[:-3] + ("AAA" if not real.endswith("AAA") else "BBB")
    assert client.post(f"/unsubscribe/{forged}", data=ONE_CLICK).status_code == 404
    assert client.get("/unsubscribe/garbage").status_code == 404
    assert client.post("/unsubscribe/x.y", data=ONE_CLICK).status_code == 404


def test_leaving_while_pending_voids_the_confirm_link(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    editor.post("/subscribe", json={"email": READER})
    [mail] = smtp.wait_for(1)
    path = unsubscribe_path(services, int(reader(editor)["id"]))
    assert editor.post(path, data=ONE_CLICK).status_code == 200
    assert editor.post(link_in(mail.message, "/confirm/")).status_code == 410
    assert statuses(editor) == {"news": "unsubscribed"}
    outbox_idle(services)
    assert count_rows(services, Subscription) == 1
