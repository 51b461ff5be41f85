"""The editors' API: keys, lists, forms and their consent versions, subscribers, health."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mailer import config
from mailer.api.app import create_app
from mailer.services import Services, build
from tests.conftest import SECRET, SmtpSink, link_in

READER = "reader@example.com"

PROTECTED = [
    ("GET", "/api/v1/lists"),
    ("POST", "/api/v1/lists"),
    ("GET", "/api/v1/forms"),
    ("POST", "/api/v1/forms"),
    ("GET", "/api/v1/forms/default"),
    ("PATCH", "/api/v1/forms/default"),
    ("GET", "/api/v1/subscribers?email=reader@example.com"),
    ("GET", "/api/v1/subscribers/export.csv"),
    ("GET", "/api/v1/subscribers/1"),
    ("GET", "/api/v1/subscribers/1/consent/verify"),
    ("POST", "/api/v1/subscribers/1/erase"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_editor_call_needs_a_valid_key(client: TestClient, method: str, path: str) -> None:
    assert client.request(method, path).status_code == 401
    wrong = {"Authorization": "Bearer mk_not-a-real-key"}
    assert client.request(method, path, headers=wrong).status_code == 401
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    assert client.request(method, path, headers=basic).status_code == 401


def test_lists_are_created_once(editor: TestClient) -> None:
    created = editor.post("/api/v1/lists", json={"slug": "sport", "name": "Sport Weekly"})
    assert created.status_code == 201
    assert isinstance(created.json()["id"], int)
    assert editor.post("/api/v1/lists", json={"slug": "sport", "name": "Again"}).status_code == 409
    assert editor.post("/api/v1/lists", json={"slug": "Bad Slug!", "name": "x"}).status_code == 422
    assert editor.post("/api/v1/lists", json={"slug": "x"}).status_code == 422
    slugs = [item["slug"] for item in editor.get("/api/v1/lists").json()]
    assert slugs == ["news", "sport"]


def test_the_default_form_on_news_exists_from_the_start(editor: TestClient) -> None:
    form = editor.get("/api/v1/forms/default").json()
    assert form["lists"] == ["news"]
    assert form["consent_text"] == "By submitting this form, I agree to the terms."
    assert form["consent_version"] == 1
    assert 'src="http://testserver/forms/default/embed.js"' in form["embed_snippet"]


def test_forms_need_known_lists(editor: TestClient) -> None:
    answer = editor.post(
        "/api/v1/forms", json={"slug": "x", "lists": ["nope"], "consent_text": "Agreed."}
    )
    assert answer.status_code == 422
    assert editor.get("/api/v1/forms/x").status_code == 404


def test_a_new_wording_is_a_new_version_and_signups_record_it(
    editor: TestClient, smtp: SmtpSink
) -> None:
    changed = editor.patch(
        "/api/v1/forms/default",
        json={"consent_text": "I agree to the terms and the privacy policy."},
    )
    assert changed.status_code == 200
    assert changed.json()["consent_version"] == 2
    editor.post("/subscribe", json={"email": READER})
    [mail] = smtp.wait_for(1)
    editor.post(link_in(mail.message, "/confirm/"))
    [subscriber] = editor.get("/api/v1/subscribers", params={"email": READER}).json()
    for event in subscriber["consent_events"]:
        assert event["consent_version"] == 2
        assert event["consent_text"] == "I agree to the terms and the privacy policy."


def test_a_form_with_a_redirect_url_sends_readers_there(editor: TestClient) -> None:
    created = editor.post(
        "/api/v1/forms",
        json={
            "slug": "site",
            "lists": ["news"],
            "consent_text": "Agreed.",
            "redirect_url": "https://news.example.com/thanks",
        },
    )
    assert created.status_code == 201
    answer = editor.post(
        "/subscribe", data={"email": READER, "form": "site"}, follow_redirects=False
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "https://news.example.com/thanks"
    bad = editor.post(
        "/api/v1/forms",
        json={"slug": "bad", "lists": ["news"], "consent_text": "A.", "redirect_url": "js:x"},
    )
    assert bad.status_code == 422


def test_subscriber_search_answers_the_documented_fields(
    editor: TestClient, smtp: SmtpSink
) -> None:
    assert editor.get("/api/v1/subscribers", params={"email": "nobody@example.com"}).json() == []
    editor.post("/subscribe", json={"email": READER, "source_url": "https://news.example/a"})
    [found] = editor.get("/api/v1/subscribers", params={"email": READER}).json()
    assert found["email"] == READER
    assert found["lists"][0]["slug"] == "news" and found["lists"][0]["status"] == "pending"
    event = found["consent_events"][0]
    for field in (
        "action",
        "at",
        "lists",
        "form",
        "consent_text",
        "consent_version",
        "source_url",
        "ip",
        "user_agent",
    ):
        assert field in event
    assert event["source_url"] == "https://news.example/a"
    pending = editor.get("/api/v1/subscribers", params={"list": "news", "status": "pending"})
    assert [s["email"] for s in pending.json()] == [READER]
    assert editor.get("/api/v1/subscribers", params={"status": "confirmed"}).json() == []
    assert editor.get("/api/v1/subscribers", params={"email": "not an address"}).status_code == 422


def test_export_is_csv_with_one_row_per_subscription(editor: TestClient, smtp: SmtpSink) -> None:
    editor.post("/api/v1/lists", json={"slug": "sport", "name": "Sport"})
    editor.post(
        "/api/v1/forms", json={"slug": "both", "lists": ["news", "sport"], "consent_text": "Yes."}
    )
    editor.post("/subscribe", json={"email": READER, "form": "both"})
    editor.post("/subscribe", json={"email": "=cmd@example.com"})
    answer = editor.get("/api/v1/subscribers/export.csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [(r["email"], r["list"], r["status"]) for r in rows] == [
        (READER, "news", "pending"),
        (READER, "sport", "pending"),
        ("'=cmd@example.com", "news", "pending"),
    ], "a leading = is defused for spreadsheets"
    only_sport = list(
        csv.DictReader(io.StringIO(editor.get("/api/v1/subscribers/export.csv?list=sport").text))
    )
    assert [r["list"] for r in only_sport] == ["sport"]


def test_openapi_documents_the_editors_api(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/lists",
        "/api/v1/forms",
        "/api/v1/subscribers",
        "/api/v1/subscribers/{subscriber_id}/consent/verify",
        "/subscribe",
    ):
        assert path in paths


def test_health_readiness_and_metrics(client: TestClient, services: Services) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200

    def signups() -> float:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith("mailer_signups_total "):
                return float(line.split()[1])
        raise AssertionError("mailer_signups_total missing")

    before = signups()
    client.post("/subscribe", json={"email": READER})
    assert signups() == before + 1
    assert "mailer_outbox_depth" in client.get("/metrics").text


def test_readiness_fails_when_the_database_is_unreachable(tmp_path: Path) -> None:
    settings = config.load(
        data_dir=str(tmp_path),
        secret_key=SECRET,
        database={"url": "postgresql://postgres@127.0.0.1:1/nowhere"},
    )
    app = create_app(build(settings), run_sender=False, run_scheduler=False)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
