"""The editors' API under /api/v1 (keys, lists, forms and their consent wording,
subscribers, export), its OpenAPI description, and the health and metrics endpoints."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text, update

from mailer import config
from mailer.app import create_app
from mailer.db import session_scope
from mailer.models import ApiKey, Form, MailingList
from mailer.services import Services, build
from tests.conftest import SECRET, SmtpSink, count_rows, link_in
from tests.factories import ARTICLE, BROWSER, DEFAULT_WORDING, READER, find, sign_up


def create_sport(editor: TestClient) -> None:
    assert (
        editor.post("/api/v1/lists", json={"slug": "sport", "name": "Sport Weekly"}).status_code
        == 201
    )


# ---- keys ------------------------------------------------------------------------------

PROTECTED = [
    ("GET", "/api/v1/lists", None),
    ("POST", "/api/v1/lists", {"slug": "sport", "name": "Sport Weekly"}),
    ("POST", "/api/v1/lists", {}),
    ("GET", "/api/v1/lists/news", None),
    ("PATCH", "/api/v1/lists/news", {"name": "Renamed"}),
    ("GET", "/api/v1/forms", None),
    ("POST", "/api/v1/forms", {"slug": "x", "lists": ["news"], "consent_text": "Yes."}),
    ("GET", "/api/v1/forms/default", None),
    ("PATCH", "/api/v1/forms/default", {"consent_text": "Changed without a key."}),
    ("GET", "/api/v1/subscribers?email=reader@example.com", None),
    ("GET", "/api/v1/subscribers/export.csv", None),
    ("GET", "/api/v1/subscribers/1", None),
    ("GET", "/api/v1/subscribers/1/consent/verify", None),
    ("POST", "/api/v1/subscribers/1/erase", None),
]

NOT_A_VALID_KEY = [
    {},
    {"Authorization": "Bearer mk_not-a-real-key"},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic dXNlcjpwYXNz"},
    {"Authorization": "mk_no-scheme"},
]


def with_key(client: TestClient, key: str, path: str) -> Any:
    answer = client.get(path, headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200
    return answer.json()


def test_every_editor_call_needs_a_valid_key(
    client: TestClient, services: Services, smtp: SmtpSink, api_key: str
) -> None:
    sign_up(client)
    smtp.wait_for(1)
    for method, path, body in PROTECTED:
        for headers in [*NOT_A_VALID_KEY, {"Authorization": f"Basic {api_key}"}]:
            answer = client.request(method, path, json=body, headers=headers)
            assert answer.status_code == 401, (method, path, headers)
            assert answer.headers["www-authenticate"] == "Bearer"
    assert count_rows(services, MailingList) == 1
    assert count_rows(services, Form) == 1
    assert with_key(client, api_key, "/api/v1/forms/default")["consent_version"] == 1
    assert with_key(client, api_key, "/api/v1/lists/news")["name"] == "News"
    [reader] = with_key(client, api_key, f"/api/v1/subscribers?email={READER}")
    assert reader["erased"] is False


def test_a_revoked_key_is_refused(client: TestClient, services: Services, api_key: str) -> None:
    assert with_key(client, api_key, "/api/v1/lists")
    with session_scope(services.engine) as session:
        session.execute(update(ApiKey).values(revoked_at=services.clock.now()))
    answer = client.get("/api/v1/lists", headers={"Authorization": f"Bearer {api_key}"})
    assert answer.status_code == 401


def test_keys_are_stored_only_as_a_hash(services: Services, api_key: str) -> None:
    with services.engine.connect() as conn:
        stored = [str(tuple(row)) for row in conn.execute(text("SELECT * FROM api_keys"))]
    assert len(stored) == 1
    assert api_key not in stored[0]
    assert api_key[len("mk_") + 8 :] not in stored[0]


def test_browsers_on_other_sites_cannot_call_the_editors_api(client: TestClient) -> None:
    preflight = client.options(
        "/api/v1/lists",
        headers={
            "Origin": "https://elsewhere.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    allowed = preflight.headers.get("access-control-allow-headers", "").lower()
    assert preflight.status_code >= 400 or "authorization" not in allowed


# ---- lists -----------------------------------------------------------------------------


def test_a_list_is_created_with_201_and_its_id(editor: TestClient) -> None:
    created = editor.post(
        "/api/v1/lists",
        json={"slug": "sport", "name": "Sport Weekly", "description": "Results and more"},
    )
    assert created.status_code == 201
    body = created.json()
    assert isinstance(body["id"], int)
    assert (body["slug"], body["name"], body["description"]) == (
        "sport",
        "Sport Weekly",
        "Results and more",
    )
    assert editor.get("/api/v1/lists/sport").json()["id"] == body["id"]
    assert [item["slug"] for item in editor.get("/api/v1/lists").json()] == ["news", "sport"]


@pytest.mark.both_databases
def test_a_taken_list_slug_is_409(editor: TestClient, services: Services) -> None:
    create_sport(editor)
    again = editor.post("/api/v1/lists", json={"slug": "sport", "name": "Another"})
    assert again.status_code == 409
    assert "sport" in again.json()["detail"]
    assert editor.post("/api/v1/lists", json={"slug": "news", "name": "News 2"}).status_code == 409
    assert count_rows(services, MailingList) == 2
    assert editor.get("/api/v1/lists/sport").json()["name"] == "Sport Weekly"


BAD_LISTS = [
    {"slug": "Bad Slug!", "name": "x"},
    {"slug": "Sport", "name": "x"},
    {"slug": "-sport", "name": "x"},
    {"slug": "sport_weekly", "name": "x"},
    {"slug": "", "name": "x"},
    {"slug": "s" * 65, "name": "x"},
    {"slug": "sport"},
    {"slug": "sport", "name": ""},
    {"slug": "sport", "name": "Sport\r\nBcc: victim@example.com"},
    {"slug": "sport", "name": "Sport", "colour": "red"},
    {"slug": 7, "name": "Sport"},
]


def test_a_bad_list_is_422_and_not_created(editor: TestClient, services: Services) -> None:
    for body in BAD_LISTS:
        answer = editor.post("/api/v1/lists", json=body)
        assert answer.status_code == 422, body
        assert answer.json()["detail"], body
    assert count_rows(services, MailingList) == 1


# ---- forms -----------------------------------------------------------------------------


def test_the_default_form_on_news_exists_from_the_start(editor: TestClient) -> None:
    answer = editor.get("/api/v1/forms/default")
    assert answer.status_code == 200
    form = answer.json()
    assert form["slug"] == "default"
    assert form["lists"] == ["news"]
    assert form["consent_text"] == DEFAULT_WORDING
    assert form["consent_version"] == 1
    assert form["form_url"] == "http://testserver/forms/default"
    assert 'src="http://testserver/forms/default/embed.js"' in form["embed_snippet"]
    assert [item["slug"] for item in editor.get("/api/v1/forms").json()] == ["default"]


def test_a_form_is_created_with_201(editor: TestClient) -> None:
    create_sport(editor)
    created = editor.post(
        "/api/v1/forms",
        json={
            "slug": "both",
            "lists": ["news", "sport"],
            "consent_text": "Send me news and sport.",
            "redirect_url": "https://news.example.com/thanks",
        },
    )
    assert created.status_code == 201
    form = created.json()
    assert isinstance(form["id"], int)
    assert form["lists"] == ["news", "sport"]
    assert (form["consent_text"], form["consent_version"]) == ("Send me news and sport.", 1)
    assert form["redirect_url"] == "https://news.example.com/thanks"
    assert editor.get("/api/v1/forms/both").json() == form
    page = editor.get("/forms/both")
    assert page.status_code == 200 and "Send me news and sport." in page.text


def test_a_form_says_thank_you_in_its_own_words(editor: TestClient) -> None:
    made = editor.post(
        "/api/v1/forms",
        json={"slug": "local", "lists": ["news"], "consent_text": "Yes.", "thanks_message": "Ta!"},
    )
    assert made.status_code == 201 and made.json()["thanks_message"] == "Ta!"
    assert "Ta!" in editor.get("/forms/local/thanks").text
    changed = editor.patch("/api/v1/forms/local", json={"thanks_message": "Danke!"})
    assert changed.status_code == 200 and changed.json()["thanks_message"] == "Danke!"
    assert "Danke!" in editor.get("/forms/local/thanks").text


BAD_FORMS = [
    ({"slug": "x", "lists": ["no-such-list"], "consent_text": "Yes."}, 422),
    ({"slug": "x", "lists": ["news", "no-such-list"], "consent_text": "Yes."}, 422),
    ({"slug": "x", "lists": [], "consent_text": "Yes."}, 422),
    ({"slug": "x", "lists": ["news"], "consent_text": ""}, 422),
    ({"slug": "x", "lists": ["news"], "consent_text": "   "}, 422),
    ({"slug": "X Y", "lists": ["news"], "consent_text": "Yes."}, 422),
    ({"slug": "x", "lists": ["news"], "consent_text": "Yes.", "redirect_url": "js:x"}, 422),
    ({"slug": "x", "lists": ["news"], "consent_text": "Yes.", "redirect_url": "/t"}, 422),
    ({"slug": "default", "lists": ["news"], "consent_text": "Yes."}, 409),
]


def test_a_bad_form_is_refused_and_not_created(editor: TestClient, services: Services) -> None:
    for body, status in BAD_FORMS:
        answer = editor.post("/api/v1/forms", json=body)
        assert answer.status_code == status, body
        assert answer.json()["detail"], body
    assert count_rows(services, Form) == 1
    assert editor.get("/api/v1/forms/x").status_code == 404


@pytest.mark.both_databases
def test_new_wording_is_a_new_version_that_later_signups_record(
    editor: TestClient, smtp: SmtpSink
) -> None:
    wording = "I agree to the terms and to the privacy policy of 24 November."
    changed = editor.patch("/api/v1/forms/default", json={"consent_text": wording})
    assert changed.status_code == 200
    assert (changed.json()["consent_text"], changed.json()["consent_version"]) == (wording, 2)
    same = editor.patch("/api/v1/forms/default", json={"consent_text": wording})
    assert same.json()["consent_version"] == 2, "the same words are the same version"

    sign_up(editor)
    [mail] = smtp.wait_for(1)
    editor.post(link_in(mail.message, "/confirm/"))

    [reader] = find(editor)
    requested, confirmed = reader["consent_events"]
    assert requested["action"] == "requested"
    assert (requested["consent_text"], requested["consent_version"]) == (wording, 2)
    assert requested["form"] == "default"
    assert (confirmed["consent_text"], confirmed["consent_version"]) == (wording, 2)


@pytest.mark.both_databases
def test_a_confirmation_records_the_wording_the_reader_saw_not_a_later_one(
    editor: TestClient, smtp: SmtpSink
) -> None:
    sign_up(editor)
    [mail] = smtp.wait_for(1)
    editor.patch("/api/v1/forms/default", json={"consent_text": "Newer words."})

    editor.post(link_in(mail.message, "/confirm/"))

    confirmed = find(editor)[0]["consent_events"][-1]
    assert confirmed["action"] == "confirmed"
    assert (confirmed["consent_text"], confirmed["consent_version"]) == (DEFAULT_WORDING, 1)


def test_a_refused_form_change_changes_nothing(editor: TestClient) -> None:
    answer = editor.patch(
        "/api/v1/forms/default", json={"consent_text": "New words.", "lists": ["no-such-list"]}
    )
    assert answer.status_code == 422
    form = editor.get("/api/v1/forms/default").json()
    assert (form["consent_text"], form["consent_version"], form["lists"]) == (
        DEFAULT_WORDING,
        1,
        ["news"],
    )
    assert editor.patch("/api/v1/forms/nope", json={"name": "x"}).status_code == 404


def test_a_form_with_a_redirect_url_sends_html_signups_there(
    editor: TestClient, smtp: SmtpSink
) -> None:
    editor.post(
        "/api/v1/forms",
        json={
            "slug": "site",
            "lists": ["news"],
            "consent_text": "Yes, please.",
            "redirect_url": "https://news.example.com/thanks?from=newsletter",
        },
    )

    answer = editor.post(
        "/subscribe", data={"email": READER, "form": "site"}, follow_redirects=False
    )

    assert answer.status_code == 303
    assert answer.headers["location"] == "https://news.example.com/thanks?from=newsletter"
    as_json = sign_up(editor, "other@example.com", form="site")
    assert (as_json.status_code, as_json.json()) == (202, {"status": "pending"})
    smtp.wait_for(2)


# ---- subscribers -----------------------------------------------------------------------


def test_searching_an_unknown_address_answers_an_empty_list(editor: TestClient) -> None:
    assert find(editor, "nobody@example.com") == []
    assert editor.get("/api/v1/subscribers", params={"email": "not an address"}).status_code == 422


def test_a_subscriber_is_shown_with_the_documented_fields(
    editor: TestClient, smtp: SmtpSink
) -> None:
    sign_up(editor)
    [mail] = smtp.wait_for(1)
    editor.post(link_in(mail.message, "/confirm/"), headers={"User-Agent": BROWSER})

    [reader] = find(editor, " reader@EXAMPLE.com ")

    assert reader["email"] == READER
    assert reader["lists"][0]["slug"] == "news"
    assert reader["lists"][0]["status"] == "confirmed"
    requested, confirmed = reader["consent_events"]
    assert {
        key: requested[key]
        for key in (
            "action",
            "lists",
            "form",
            "consent_text",
            "consent_version",
            "source_url",
            "ip",
            "user_agent",
        )
    } == {
        "action": "requested",
        "lists": ["news"],
        "form": "default",
        "consent_text": DEFAULT_WORDING,
        "consent_version": 1,
        "source_url": ARTICLE,
        "ip": "203.0.113.7",
        "user_agent": BROWSER,
    }
    assert requested["at"].startswith("20")
    assert confirmed["action"] == "confirmed" and confirmed["at"] >= requested["at"]


@pytest.mark.both_databases
def test_subscribers_can_be_listed_by_list_and_status(editor: TestClient, smtp: SmtpSink) -> None:
    sign_up(editor)
    sign_up(editor, "second@example.com")
    smtp.wait_for(2)
    pending = editor.get("/api/v1/subscribers", params={"list": "news", "status": "pending"})
    assert [s["email"] for s in pending.json()] == [READER, "second@example.com"]
    assert editor.get("/api/v1/subscribers", params={"status": "confirmed"}).json() == []
    assert editor.get("/api/v1/subscribers", params={"status": "whatever"}).status_code == 422


def export(editor: TestClient, **params: str) -> list[dict[str, str]]:
    answer = editor.get("/api/v1/subscribers/export.csv", params=params)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(answer.text)))


@pytest.mark.both_databases
def test_the_export_is_csv_with_a_row_per_subscription(editor: TestClient, smtp: SmtpSink) -> None:
    assert export(editor) == [], "a header and no rows"
    header = editor.get("/api/v1/subscribers/export.csv").text.splitlines()[0].split(",")
    assert {"email", "list", "status"} <= set(header)

    create_sport(editor)
    editor.post(
        "/api/v1/forms",
        json={"slug": "both", "lists": ["news", "sport"], "consent_text": "Yes to both."},
    )
    sign_up(editor, form="both")
    sign_up(editor, "second@example.com")
    [first, _] = smtp.wait_for(2)
    editor.post(link_in(first.message, "/confirm/"))

    rows = export(editor)
    assert [(r["email"], r["list"], r["status"]) for r in rows] == [
        (READER, "news", "confirmed"),
        (READER, "sport", "confirmed"),
        ("second@example.com", "news", "pending"),
    ]
    assert [(r["email"], r["list"]) for r in export(editor, list="sport")] == [(READER, "sport")]
    assert export(editor, list="no-such-list") == []


def test_the_export_defuses_spreadsheet_formulas(editor: TestClient, smtp: SmtpSink) -> None:
    sign_up(editor, "=cmd@example.com")
    smtp.wait_for(1)
    [row] = export(editor)
    assert row["email"] == "'=cmd@example.com"


# ---- the API's description, health and metrics -----------------------------------------


def test_the_openapi_schema_documents_the_editors_api(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path, methods in {
        "/api/v1/lists": {"get", "post"},
        "/api/v1/forms": {"get", "post"},
        "/api/v1/forms/{slug}": {"get", "patch"},
        "/api/v1/subscribers": {"get"},
        "/api/v1/subscribers/export.csv": {"get"},
        "/api/v1/subscribers/{subscriber_id}/consent/verify": {"get"},
        "/api/v1/subscribers/{subscriber_id}/erase": {"post"},
    }.items():
        assert methods <= set(paths[path]), path
    assert any(
        scheme.get("scheme") == "bearer"
        for scheme in schema["components"]["securitySchemes"].values()
    )
    assert "security" in paths["/api/v1/lists"]["post"]
    listed = paths["/api/v1/subscribers"]["get"]["responses"]["200"]["content"]
    assert "application/json" in listed


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_readiness_fails_while_the_database_is_unreachable(tmp_path: Path) -> None:
    settings = config.load(
        data_dir=str(tmp_path),
        secret_key=SECRET,
        database={"url": "postgresql://postgres@127.0.0.1:1/nowhere"},
    )
    app = create_app(build(settings), run_sender=False, run_scheduler=False)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503


def metric(client: TestClient, name: str) -> float:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    for line in answer.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


def test_metrics_count_accepted_signups(client: TestClient, smtp: SmtpSink) -> None:
    before = metric(client, "mailer_signups_total")

    sign_up(client)
    assert metric(client, "mailer_signups_total") == before + 1

    sign_up(client, "not-an-address")
    sign_up(client, "bot@example.com", website="http://spam.example")
    assert metric(client, "mailer_signups_total") == before + 1, "refused and trapped: not"
    assert metric(client, 'mailer_signups_rejected_total{reason="422"}') == 1
    smtp.wait_for(1)
