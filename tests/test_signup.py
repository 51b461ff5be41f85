"""Signup and double opt-in across HTTP, the database and a real SMTP server."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mailer.clock import FrozenClock
from mailer.models import ConsentEvent, OutboxMessage, Subscriber
from mailer.services import Services
from mailer.tokens import Purpose
from tests.conftest import SmtpSink, count_rows, link_in, outbox_idle
from tests.factories import ARTICLE, BROWSER, READER, sign_up


def lookup(editor: TestClient, email: str = READER) -> dict:
    found = editor.get("/api/v1/subscribers", params={"email": email})
    assert found.status_code == 200
    assert len(found.json()) == 1
    return found.json()[0]


def statuses(subscriber: dict) -> dict[str, str]:
    return {item["slug"]: item["status"] for item in subscriber["lists"]}


@pytest.mark.both_databases
def test_signup_confirm_flow_records_consent(editor: TestClient, smtp: SmtpSink) -> None:
    answer = sign_up(editor)
    assert answer.status_code == 202
    assert answer.json() == {"status": "pending"}

    [mail] = smtp.wait_for(1)
    assert mail.rcpt_tos == [READER]
    message = mail.message
    assert "News" in message["Subject"]
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "News" in text and "ignore this email" in text
    assert message.get_content_type() == "multipart/alternative"
    assert "List-Unsubscribe" not in message  # transactional: one link only

    assert statuses(lookup(editor)) == {"news": "pending"}

    confirm_path = link_in(message, "/confirm/")
    page = editor.get(confirm_path)
    assert page.status_code == 200
    assert '<form method="post"' in page.text
    assert statuses(lookup(editor)) == {"news": "pending"}, "a GET must not confirm"

    done = editor.post(confirm_path, headers={"User-Agent": BROWSER})
    assert done.status_code == 200
    assert "subscribed" in done.text
    subscriber = lookup(editor)
    assert statuses(subscriber) == {"news": "confirmed"}
    actions = [event["action"] for event in subscriber["consent_events"]]
    assert actions == ["requested", "confirmed"]
    requested, confirmed = subscriber["consent_events"]
    assert requested["source_url"] == ARTICLE
    assert requested["ip"] == "203.0.113.7"
    assert requested["user_agent"] == BROWSER
    assert requested["consent_text"] == "By submitting this form, I agree to the terms."
    assert requested["consent_version"] == 1
    assert requested["form"] == "default"
    assert requested["lists"] == ["news"]
    assert confirmed["ip"] == "203.0.113.7" and confirmed["user_agent"] == BROWSER
    assert confirmed["consent_text"] == requested["consent_text"]

    again = editor.post(confirm_path)
    assert again.status_code == 200, "confirming twice is harmless"
    assert [e["action"] for e in lookup(editor)["consent_events"]] == actions


@pytest.mark.both_databases
def test_repeated_signup_gives_same_answer_and_no_second_mail(
    client: TestClient, services: Services, smtp: SmtpSink
) -> None:
    first = sign_up(client)
    smtp.wait_for(1)
    events = count_rows(services, ConsentEvent)
    for _ in range(3):
        repeat = sign_up(client)
        assert (repeat.status_code, repeat.json()) == (first.status_code, first.json())
    outbox_idle(services)
    assert len(smtp.messages) == 1
    assert count_rows(services, ConsentEvent) == events


@pytest.mark.both_databases
def test_pending_reader_gets_a_new_mail_after_the_window(
    client: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    sign_up(client)
    smtp.wait_for(1)
    clock.advance(minutes=61)
    sign_up(client)
    smtp.wait_for(2)
    assert len(smtp.to(READER)) == 2


@pytest.mark.both_databases
def test_resubmitting_does_not_demote_a_confirmed_reader(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    sign_up(editor)
    [mail] = smtp.wait_for(1)
    editor.post(link_in(mail.message, "/confirm/"))
    clock.advance(hours=5)
    answer = sign_up(editor)
    assert answer.status_code == 202
    outbox_idle(services)
    assert len(smtp.messages) == 1, "a confirmed reader gets no new confirmation"
    assert statuses(lookup(editor)) == {"news": "confirmed"}


@pytest.mark.both_databases
def test_confirmed_reader_joining_another_list_confirms_only_that_list(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    editor.post("/api/v1/lists", json={"slug": "sport", "name": "Sport Weekly"})
    created = editor.post(
        "/api/v1/forms",
        json={
            "slug": "both",
            "lists": ["news", "sport"],
            "consent_text": "Send me news and sport. I agree to the terms.",
        },
    )
    assert created.status_code == 201
    sign_up(editor)
    [mail] = smtp.wait_for(1)
    editor.post(link_in(mail.message, "/confirm/"))

    clock.advance(minutes=61)  # past the one-mail-per-window limit
    answer = sign_up(editor, form="both")
    assert answer.status_code == 202
    messages = smtp.wait_for(2)
    second = messages[1].message
    assert "Sport Weekly" in second["Subject"] and "News" not in second["Subject"]
    assert statuses(lookup(editor)) == {"news": "confirmed", "sport": "pending"}
    editor.post(link_in(second, "/confirm/"))
    subscriber = lookup(editor)
    assert statuses(subscriber) == {"news": "confirmed", "sport": "confirmed"}
    assert subscriber["consent_events"][-1]["lists"] == ["sport"]
    assert subscriber["consent_events"][-1]["form"] == "both"


@pytest.mark.both_databases
def test_unsubscribed_reader_returns_only_through_a_new_confirmation(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    sign_up(editor)
    [mail] = smtp.wait_for(1)
    first_link = link_in(mail.message, "/confirm/")
    editor.post(first_link)
    subscriber_id = lookup(editor)["id"]
    token = services.signer.sign(Purpose.unsubscribe, {"s": subscriber_id})
    assert (
        editor.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}).status_code
        == 200
    )
    assert statuses(lookup(editor)) == {"news": "unsubscribed"}

    editor.post(first_link)  # the old link is used up: it brings nobody back
    assert statuses(lookup(editor)) == {"news": "unsubscribed"}

    clock.advance(minutes=61)
    assert sign_up(editor).status_code == 202
    messages = smtp.wait_for(2)
    assert statuses(lookup(editor)) == {"news": "unsubscribed"}, "needs the new confirmation"
    editor.post(link_in(messages[1].message, "/confirm/"))
    subscriber = lookup(editor)
    assert statuses(subscriber) == {"news": "confirmed"}
    assert subscriber["consent_events"][-1]["action"] == "resubscribed"


@pytest.mark.both_databases
def test_confirm_link_expires(
    client: TestClient, editor: TestClient, smtp: SmtpSink, clock: FrozenClock
) -> None:
    sign_up(client)
    [mail] = smtp.wait_for(1)
    clock.advance(hours=73)
    answer = client.post(link_in(mail.message, "/confirm/"))
    assert answer.status_code == 410
    assert statuses(lookup(editor)) == {"news": "pending"}


def test_forged_or_foreign_tokens_are_refused(client: TestClient, services: Services) -> None:
    assert client.get("/confirm/not-a-token").status_code == 404
    assert client.post("/confirm/abc.def").status_code == 404
    unsubscribe_token = services.signer.sign(Purpose.unsubscribe, {"s": 1})
    assert client.post(f"/confirm/{unsubscribe_token}").status_code == 404
    confirm_token = services.signer.sign(Purpose.confirm, {"c": 1})
    assert (
        client.post(
            f"/unsubscribe/{confirm_token}", data={"List-Unsubscribe": "One-Click"}
        ).status_code
        == 404
    )


def test_honeypot_answers_like_a_signup_and_writes_nothing(
    client: TestClient, services: Services, smtp: SmtpSink
) -> None:
    real = sign_up(client, email="someone@example.net")
    trap = sign_up(client, email="bot@example.net", website="http://spam.example")
    assert (trap.status_code, trap.json()) == (real.status_code, real.json())
    form_trap = client.post(
        "/subscribe", data={"email": "bot2@example.net", "website": "x"}, follow_redirects=False
    )
    assert form_trap.status_code == 303
    outbox_idle(services)
    assert [m.rcpt_tos for m in smtp.messages] == [["someone@example.net"]]
    assert count_rows(services, Subscriber) == 1


@pytest.mark.parametrize("content", ["urlencoded", "multipart"])
def test_html_form_posts_redirect_to_the_thank_you_page(
    client: TestClient, smtp: SmtpSink, content: str
) -> None:
    fields = {"email": READER, "form": "default"}
    if content == "urlencoded":
        answer = client.post("/subscribe", data=fields, follow_redirects=False)
    else:
        answer = client.post(
            "/subscribe", files={k: (None, v) for k, v in fields.items()}, follow_redirects=False
        )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/forms/default/thanks"
    assert "Check your inbox" in client.get(answer.headers["location"]).text
    smtp.wait_for(1)


@pytest.mark.both_databases
def test_address_is_normalized(editor: TestClient, smtp: SmtpSink) -> None:
    sign_up(editor, email="  Reader@EXAMPLE.Com ")
    smtp.wait_for(1)
    assert smtp.messages[0].rcpt_tos == ["Reader@example.com"]
    assert lookup(editor, "Reader@example.com")["email"] == "Reader@example.com"
    assert lookup(editor, "Reader@Example.COM")["email"] == "Reader@example.com"


BAD_INPUTS = [
    ({"email": "not-an-address"}, 422),
    ({"email": ""}, 422),
    ({"email": "a@b.c\r\nBcc: victim@example.com"}, 422),
    ({"email": "reader@example.com\n"}, 422),
    ({"email": "=?utf-8?q?reader=0D=0ABcc=3A_x=40y=2Ez?=@example.com"}, 422),
    ({"email": READER, "name": "Eve\r\nBcc: victim@example.com"}, 422),
    ({"email": READER, "name": "=?utf-8?b?RXZlDQpCY2M6IHZAeC55?="}, 422),
    ({"email": READER, "form": "no-such-form"}, 404),
    ({"email": READER, "lists": ["no-such-list"]}, 422),
    ({"email": READER, "lists": "news,nope"}, 422),
    ({"email": ["a@b.org"] * 3, "lists": {"x": 1}}, 422),
    ({"email": "x" * 300 + "@example.com"}, 422),
    ({"email": {"nested": "object"}}, 422),
]


@pytest.mark.parametrize(("body", "status"), BAD_INPUTS)
def test_bad_input_gets_a_clear_4xx_and_writes_nothing(
    client: TestClient, services: Services, body: dict, status: int
) -> None:
    answer = client.post("/subscribe", json={"form": "default", **body})
    assert answer.status_code == status
    assert answer.json()["detail"]
    assert count_rows(services, Subscriber) == 0
    assert count_rows(services, ConsentEvent) == 0
    assert count_rows(services, OutboxMessage) == 0


def test_malformed_bodies_get_4xx(client: TestClient, services: Services) -> None:
    cases = [
        client.post(
            "/subscribe", content=b"{not json", headers={"Content-Type": "application/json"}
        ),
        client.post("/subscribe", content=b"[1, 2]", headers={"Content-Type": "application/json"}),
        client.post(
            "/subscribe", content=b"\xff\xfe", headers={"Content-Type": "application/json"}
        ),
        client.post(
            "/subscribe", content=b"email=a%40b.org", headers={"Content-Type": "text/plain"}
        ),
        client.post(
            "/subscribe",
            content=b"--x\r\nbroken",
            headers={"Content-Type": "multipart/form-data; boundary=x"},
        ),
        client.post("/subscribe", json={"email": READER, "pad": "x" * 20_000}),
        client.post("/subscribe", files={"email": ("a.txt", b"reader@example.com")}),
    ]
    assert [c.status_code for c in cases] == [400, 400, 400, 415, 422, 413, 400]
    assert count_rows(services, Subscriber) == 0


def test_consent_box_must_be_ticked_when_the_form_has_one(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    editor.post(
        "/api/v1/forms",
        json={
            "slug": "boxed",
            "lists": ["news"],
            "consent_text": "I agree to the terms.",
            "consent_checkbox": True,
        },
    )
    page = editor.get("/forms/boxed").text
    assert 'name="consent"' in page and "checked" not in page.split('name="consent"')[1][:40]
    refused = sign_up(editor, form="boxed")
    assert refused.status_code == 422
    assert count_rows(services, Subscriber) == 0
    assert sign_up(editor, form="boxed", consent=True).status_code == 202
    smtp.wait_for(1)


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict:
    return getattr(request, "param", {})


@pytest.mark.parametrize(
    "settings_overrides", [{"signup": {"rate_limit_per_ip": 3}}], indirect=True
)
def test_per_ip_limit_answers_429_with_retry_after(client: TestClient, services: Services) -> None:
    for n in range(3):
        assert sign_up(client, email=f"r{n}@example.com").status_code == 202
    limited = sign_up(client, email="r9@example.com")
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert count_rows(services, Subscriber) == 3


@pytest.mark.parametrize(
    "settings_overrides", [{"signup": {"rate_limit_per_address": 2}}], indirect=True
)
def test_per_address_limit_answers_429(client: TestClient) -> None:
    assert sign_up(client).status_code == 202
    assert sign_up(client).status_code == 202
    limited = sign_up(client)
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    assert sign_up(client, email="other@example.com").status_code == 202


@pytest.mark.parametrize(
    "settings_overrides", [{"signup": {"trusted_proxies": ["203.0.113.0/24"]}}], indirect=True
)
def test_client_ip_comes_from_forwarded_for_behind_a_trusted_proxy(
    editor: TestClient, smtp: SmtpSink
) -> None:
    editor.post(
        "/subscribe", json={"email": READER}, headers={"X-Forwarded-For": "1.2.3.4, 198.51.100.9"}
    )
    assert lookup(editor)["consent_events"][0]["ip"] == "198.51.100.9"


def test_forwarded_for_is_ignored_from_untrusted_peers(editor: TestClient) -> None:
    editor.post("/subscribe", json={"email": READER}, headers={"X-Forwarded-For": "1.2.3.4"})
    assert lookup(editor)["consent_events"][0]["ip"] == "203.0.113.7"


def test_signup_returns_before_any_smtp_traffic(
    client: TestClient, services: Services, smtp: SmtpSink
) -> None:
    smtp.stop()  # the relay is down: the signup must not notice
    answer = sign_up(client)
    assert answer.status_code == 202
    assert count_rows(services, OutboxMessage) == 1


@pytest.mark.both_databases
def test_a_second_list_within_the_window_is_mailed_when_the_window_ends(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    editor.post("/api/v1/lists", json={"slug": "sport", "name": "Sport Weekly"})
    editor.post(
        "/api/v1/forms",
        json={
            "slug": "sport",
            "lists": ["sport"],
            "consent_text": "Sport please. I agree to the terms.",
        },
    )
    sign_up(editor)
    smtp.wait_for(1)
    clock.advance(minutes=5)
    assert sign_up(editor, form="sport").status_code == 202
    outbox_idle(services)
    assert len(smtp.messages) == 1, "no second mail inside the window"
    assert statuses(lookup(editor)) == {"news": "pending", "sport": "pending"}
    clock.advance(minutes=56)
    [_, later] = smtp.wait_for(2)
    subject = later.message["Subject"]
    assert "Sport Weekly" in subject and "News" not in subject, "the first link still holds"
