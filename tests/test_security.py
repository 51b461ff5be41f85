"""Security review, one behaviour a test: tokens bound to their purpose and refused when
altered, no token or address in the logs, no open redirect, and editors' templates kept
inside Jinja2's sandbox."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from mailer import config
from mailer.db import session_scope
from mailer.models import Form, Subscriber
from mailer.services import Services
from mailer.tokens import Purpose, Signer
from tests.admin import csrf_of
from tests.commands import MAILER, operator_env
from tests.conftest import SECRET, SmtpSink, free_port, link_in, one_article, outbox_idle
from tests.factories import signed_up

READER = "careful.reader@example.com"
REFUSED = "gone.reader@example.com"
TEST_SIDE = {"httpx", "httpx2", "mail"}
"""Loggers of the test's own HTTP client and SMTP sink (aiosmtpd's "mail.log")."""


def status_of(editor: TestClient, email: str = READER) -> str:
    [found] = editor.get("/api/v1/subscribers", params={"email": email}).json()
    [news] = found["lists"]
    return str(news["status"])


def change_one_character(token: str, at: int) -> str:
    replacement = "A" if token[at] != "A" else "B"
    return token[:at] + replacement + token[at + 1 :]


# ---- tokens ----------------------------------------------------------------------------


def test_tokens_for_another_purpose_or_altered_by_one_character_are_refused(
    editor: TestClient, services: Services, smtp: SmtpSink
) -> None:
    signed_up(editor, READER)
    confirm_path = link_in(smtp.wait_for(1)[-1].message, "/confirm/")
    confirm_token = confirm_path.removeprefix("/confirm/")
    [found] = editor.get("/api/v1/subscribers", params={"email": READER}).json()
    data = {"s": found["id"]}
    unsubscribe_token = services.signer.sign(Purpose.unsubscribe, data)
    bounce_token = services.signer.sign(Purpose.bounce, data)
    payload, _, mac = confirm_token.partition(".")
    forged = [
        change_one_character(confirm_token, len(confirm_token) - 1),  # the MAC's last
        change_one_character(confirm_token, 0),  # the payload's first
        change_one_character(confirm_token, len(payload) + 1),  # the MAC's first
        Signer(b"another server's secret key, long enough").sign(Purpose.confirm, data),
    ]

    refused: list[tuple[str, str]] = []
    for token in [unsubscribe_token, bounce_token, *forged]:
        refused += [("GET", f"/confirm/{token}"), ("POST", f"/confirm/{token}")]
    for token in [confirm_token, bounce_token, *forged]:
        refused += [("GET", f"/unsubscribe/{token}"), ("POST", f"/unsubscribe/{token}")]
    for method, path in refused:
        answer = editor.request(method, path, data={"List-Unsubscribe": "One-Click"})
        assert 400 <= answer.status_code < 500, (method, path, answer.status_code)
        assert status_of(editor) == "pending", (method, path)

    assert editor.post(confirm_path).status_code == 200, "the real link still works"
    assert status_of(editor) == "confirmed"
    left = editor.post(f"/unsubscribe/{unsubscribe_token}", data={"List-Unsubscribe": "One-Click"})
    assert left.status_code == 200 and status_of(editor) == "unsubscribed"


# ---- logs ------------------------------------------------------------------------------


def test_no_token_or_address_is_logged_at_info_or_above_through_a_whole_flow(
    client: TestClient,
    services: Services,
    smtp: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # A relay that quotes the address it refuses makes the sender log a warning.
    smtp.handler.replies[REFUSED] = f"550 5.1.1 <{REFUSED}>: Recipient address rejected"
    signed_up(client, REFUSED)
    signed_up(client, READER, source_url="https://news.example.com/a-story")
    confirm_path = link_in(smtp.wait_for(1)[-1].message, "/confirm/")
    assert client.get(confirm_path).status_code == 200
    assert client.post(confirm_path).status_code == 200
    with session_scope(services.engine) as session:
        subscriber_id = session.exec(
            select(Subscriber.id).where(col(Subscriber.email) == READER)
        ).one()
    unsubscribe_path = "/unsubscribe/" + services.signer.sign(
        Purpose.unsubscribe, {"s": subscriber_id}
    )
    assert client.get(unsubscribe_path).status_code == 200
    one_click = client.post(unsubscribe_path, data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    outbox_idle(services)

    secrets = [
        READER,
        READER.split("@")[0],
        REFUSED,
        confirm_path.removeprefix("/confirm/"),
        unsubscribe_path.removeprefix("/unsubscribe/"),
    ]
    logged = [
        record
        for record in caplog.records
        if record.levelno >= logging.INFO and record.name.split(".")[0] not in TEST_SIDE
    ]
    for record in logged:
        text = record.getMessage() + " " + repr(record.__dict__)
        for secret in secrets:
            assert secret not in text, (record.name, record.levelname, record.getMessage())
    assert any(r.name.startswith("mailer") for r in logged), "the app logged (the refusal)"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    """`mailer serve` as an operator starts it with no config: SQLite and a Maildir under
    ./var; its log goes to a file."""
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = operator_env(MAILER_SECRET_KEY=SECRET)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*MAILER, "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        process.kill()
        raise AssertionError(log_path.read_text())
    yield base, tmp_path, process
    process.terminate()
    process.wait(timeout=20)


def test_mailer_serve_logs_no_token_or_address_for_confirm_and_unsubscribe(
    served: tuple[str, Path, subprocess.Popen[str]],
) -> None:
    base, cwd, _process = served
    assert httpx.post(f"{base}/subscribe", json={"email": READER}).status_code == 202
    maildir = cwd / "var" / "outbox" / "new"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not list(maildir.glob("*")):
        time.sleep(0.1)
    [mail] = list(maildir.glob("*"))
    message = message_from_bytes(mail.read_bytes(), policy=policy.default)
    confirm_token = link_in(message, "/confirm/", base=base).removeprefix("/confirm/")  # type: ignore[arg-type]
    assert httpx.get(f"{base}/confirm/{confirm_token}").status_code == 200
    assert httpx.post(f"{base}/confirm/{confirm_token}").status_code == 200
    with sqlite3.connect(cwd / "var" / "mailer.db") as db:
        [(subscriber_id,)] = db.execute("SELECT id FROM subscribers").fetchall()
    settings = config.load(secret_key=SECRET)
    unsubscribe_token = Signer(config.signing_key(settings)).sign(
        Purpose.unsubscribe, {"s": subscriber_id}
    )
    assert httpx.get(f"{base}/unsubscribe/{unsubscribe_token}").status_code == 200
    left = httpx.post(
        f"{base}/unsubscribe/{unsubscribe_token}", data={"List-Unsubscribe": "One-Click"}
    )
    assert left.status_code == 200
    assert httpx.get(f"{base}/confirm/{confirm_token}x").status_code == 404

    logged = (cwd / "serve.log").read_text()
    assert "Uvicorn running" in logged or "Application startup complete" in logged, logged
    for secret in (READER, confirm_token, unsubscribe_token, "/confirm/", "/unsubscribe/"):
        assert secret not in logged, secret


# ---- open redirects --------------------------------------------------------------------


def create_form(editor: TestClient, **fields: Any) -> Any:
    return editor.post(
        "/api/v1/forms",
        json={"slug": "site", "lists": ["news"], "consent_text": "Yes, please.", **fields},
    )


def test_a_redirect_off_the_forms_allowed_hosts_is_refused_with_a_clear_422(
    editor: TestClient,
) -> None:
    refused = create_form(
        editor, redirect_url="https://evil.example/phish", allowed_hosts=["news.example.com"]
    )
    assert refused.status_code == 422
    assert "evil.example" in refused.json()["detail"] and "allowed" in refused.json()["detail"]
    for sneaky in (
        "https://news.example.com\\@evil.example/",
        "https://news.example.com@evil.example/",
        "//evil.example/",
        "javascript:alert(1)",
    ):
        answer = create_form(editor, redirect_url=sneaky, allowed_hosts=["news.example.com"])
        assert answer.status_code == 422, sneaky
    assert editor.get("/api/v1/forms/site").status_code == 404, "nothing was written"

    created = create_form(
        editor,
        redirect_url="https://News.Example.com/thanks",
        allowed_hosts=["News.Example.com", "shop.example.com"],
    )
    assert created.status_code == 201, created.text
    assert created.json()["allowed_hosts"] == ["news.example.com", "shop.example.com"]

    moved = editor.patch("/api/v1/forms/site", json={"redirect_url": "https://evil.example/"})
    assert moved.status_code == 422
    narrowed = editor.patch("/api/v1/forms/site", json={"allowed_hosts": ["shop.example.com"]})
    assert narrowed.status_code == 422, "the kept redirect would be off the allowed hosts"
    own = editor.patch("/api/v1/forms/site", json={"redirect_url": "http://testserver/thanks"})
    assert own.status_code == 200, "this server's own host is always allowed"
    bad_host = editor.patch("/api/v1/forms/site", json={"allowed_hosts": ["https://x.com/"]})
    assert bad_host.status_code == 422 and "host name" in bad_host.json()["detail"]
    kept = editor.get("/api/v1/forms/site").json()
    assert kept["redirect_url"] == "http://testserver/thanks"
    assert kept["allowed_hosts"] == ["news.example.com", "shop.example.com"]


def test_a_form_made_without_allowed_hosts_allows_only_its_redirects_host(
    editor: TestClient,
) -> None:
    created = create_form(editor, redirect_url="https://news.example.com/thanks")
    assert created.status_code == 201
    assert created.json()["allowed_hosts"] == ["news.example.com"]
    moved = editor.patch("/api/v1/forms/site", json={"redirect_url": "https://evil.example/"})
    assert moved.status_code == 422


def test_nothing_in_a_signup_request_steers_its_redirect(
    editor: TestClient, services: Services
) -> None:
    assert create_form(editor).status_code == 201
    answer = editor.post(
        "/subscribe?next=https://evil.example/&redirect=https://evil.example/",
        data={
            "email": READER,
            "form": "site",
            "redirect": "https://evil.example/",
            "redirect_url": "https://evil.example/",
            "next": "//evil.example/",
        },
        headers={"Referer": "https://evil.example/article"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/forms/site/thanks"

    # A redirect stored before its host was allowed (or allowed no longer) is not followed.
    with session_scope(services.engine) as session:
        form = session.exec(select(Form).where(col(Form.slug) == "site")).one()
        form.redirect_url = "https://evil.example/stored"
        session.add(form)
    stored = editor.post(
        "/subscribe", data={"email": "other@example.com", "form": "site"}, follow_redirects=False
    )
    assert stored.headers["location"] == "/forms/site/thanks"


def test_the_admin_form_page_sets_allowed_hosts_and_refuses_a_redirect_off_them(
    signed_in: TestClient,
) -> None:
    page = signed_in.get("/admin/forms/default")
    assert 'name="allowed_hosts"' in page.text
    fields = {
        "csrf": csrf_of(page.text),
        "name": "Default signup form",
        "consent_text": "Yes, please.",
        "lists": ["news"],
        "thanks_message": "",
    }
    refused = signed_in.post(
        "/admin/forms/default",
        data={
            **fields,
            "redirect_url": "https://evil.example/",
            "allowed_hosts": "news.example.com",
        },
        follow_redirects=False,
    )
    assert refused.status_code == 422
    assert "not one of the form" in refused.text
    assert signed_in.get("/api/v1/forms/default").json()["redirect_url"] == ""

    saved = signed_in.post(
        "/admin/forms/default",
        data={
            **fields,
            "redirect_url": "https://news.example.com/thanks",
            "allowed_hosts": "news.example.com\nshop.example.com",
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303
    form = signed_in.get("/api/v1/forms/default").json()
    assert form["allowed_hosts"] == ["news.example.com", "shop.example.com"]
    assert "shop.example.com" in signed_in.get("/admin/forms/default").text


@pytest.mark.parametrize("target", ["//evil.example/", "/\\evil.example/", "https://evil.example/"])
def test_signing_in_never_leads_off_this_site(
    client: TestClient, editor_account: None, target: str
) -> None:
    page = client.get("/admin/", params={"next": target})
    answer = client.post(
        "/admin/login",
        params={"next": target},
        data={
            "email": "editor@example.org",
            "password": "correct horse battery staple",
            "csrf": csrf_of(page.text),
            "next": target,
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert location.startswith("/admin") and "evil" not in location
    again = client.get("/admin/", params={"next": target}, follow_redirects=False)
    assert again.status_code == 303 and "evil" not in again.headers["location"]


# ---- template sandbox ------------------------------------------------------------------

REFUSED_AT_SAVE = [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ lipsum['__globals__'] }}",
    "{% include '/etc/passwd' %}",
    "{% import '/etc/passwd' as secrets %}",
    "{% from 'digest.html' import x %}",
    "{% extends '/etc/passwd' %}",
]
REFUSED_AT_PREVIEW = [
    "{{ settings.secret_key }}",
    "{{ config }}",
    "{{ settings }}",
    "{{ 'x' * 1000000000 }}",
    "{{ ((10 ** 64) ** 64) ** 64 }}",
    "{{ ''|center(1000000000) }}",
    "{{ 'x'|indent(1000000000) }}",
    "{{ [1, 2]|slice(1000000000)|list }}",
    "{{ 'a'.ljust(1000000000) }}",
    "{{ '%1000000000s' % 1 }}",
    "{{ '%*d' % (1000000000, 1) }}",
    "{{ '%1000000000s'|format(1) }}",
    "{{ '{:>1000000000}'.format(1) }}",
    "{{ '{0:{1}}'.format(1, 1000000000) }}",
]


def digest_with(editor: TestClient, part: str, template: str) -> Any:
    return editor.post(
        "/api/v1/digests",
        json={
            "list": "news",
            "name": "Sandboxed",
            "schedule": "0 7 * * *",
            f"{part}_template": template,
        },
    )


@pytest.mark.parametrize("template", REFUSED_AT_SAVE)
@pytest.mark.parametrize("part", ["subject", "html"])
def test_templates_that_reach_for_internals_or_files_are_refused_when_saved(
    editor: TestClient, template: str, part: str
) -> None:
    answer = digest_with(editor, part, template)
    assert answer.status_code == 422, answer.text
    assert "template" in answer.json()["detail"]
    assert editor.get("/api/v1/digests").json() == []
    # Changing a harmless digest into one is refused the same way.
    created = digest_with(editor, part, "{{ digest.name }}")
    assert created.status_code == 201
    changed = editor.patch(
        f"/api/v1/digests/{created.json()['id']}", json={f"{part}_template": template}
    )
    assert changed.status_code == 422
    editor.delete(f"/api/v1/digests/{created.json()['id']}")


@pytest.mark.parametrize("template", REFUSED_AT_PREVIEW)
def test_templates_naming_settings_or_building_huge_values_render_nothing(
    editor: TestClient, services: Services, template: str
) -> None:
    one_article(editor, services)
    created = digest_with(editor, "html", template)
    if created.status_code == 422:
        return
    assert created.status_code == 201
    preview = editor.get(f"/api/v1/digests/{created.json()['id']}/preview")
    assert preview.status_code == 422, preview.text
    assert SECRET not in preview.text and "database" not in preview.text
