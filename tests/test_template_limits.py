"""Editors' templates render within a time limit and a budget of bytes, outside any
database transaction: a runaway template is refused with the reason (422), a send of one
is skipped with the reason, and readers' requests go on meanwhile."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailer import config
from mailer.clock import FrozenClock
from mailer.db import session_scope
from mailer.jobs import run_due_digests
from mailer.models import Digest, Send
from mailer.services import Services
from tests.conftest import SmtpSink, link_in, one_article, store_template

LIMIT_SECONDS = 1.0

TOO_SLOW = [
    "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    "{% set r = range(100000) %}{% for a in r %}{% for b in r %}{% endfor %}{% endfor %}",
    "{% set words = lipsum(100)|list %}{% for i in words %}{% for j in words %}{% endfor %}"
    "{% endfor %}",
    "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in articles %}"
    "{% endfor %}{% endfor %}{% endfor %}",
    "{{ range(100000)|map('string')|map('upper')|map('lower')|map('upper')|map('lower')"
    "|map('upper')|map('lower')|map('upper')|list|length }}",
    "{% macro m(n) %}{% for i in range(100000) %}{% endfor %}{{ m(n) if n else '' }}"
    "{% endmacro %}{% for i in range(100000) %}{{ m(0) }}{% endfor %}",
]
TOO_BIG = [
    "{% for a in range(100000) %}{% for b in range(1000) %}{{ 'a line of text' * 10 }}"
    "{% endfor %}{% endfor %}",
    "{% for a in range(100000) %}{% for b in range(100) %}<p>A paragraph of the template's "
    "own text, written again and again by the loops around it, until the mail it makes is "
    "far larger than any newsletter.</p>{% endfor %}{% endfor %}",
    "{% macro m() %}{% for i in range(100000) %}{{ 'y' * 100000 }}{% endfor %}{% endmacro %}"
    "{% set body = m() %}",
    "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}",
    "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}",
    "{{ ('x' * 100000)|replace('x', 'x' * 100000) }}",
    "{{ ('x' * 100000).replace('x', 'x' * 100000) }}",
    "{{ ('x' * 100000)|list|join('y' * 100000) }}",
    "{{ ('y' * 100000).join('x' * 100000) }}",
    "{{ ('\t' * 100000).expandtabs(100000) }}",
    "{{ ('\n' * 100000)|indent('x' * 100000) }}",
    "{{ lipsum(100000) }}",
    "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}"
    "{% set ns.l = ns.l + ['x' * 100000] %}{% endfor %}",
]


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"templates": {"render_timeout_seconds": LIMIT_SECONDS}}


def stored_digest(services: Services, editor: TestClient, part: str, template: str) -> int:
    """A digest whose `part` template is stored as it is (as if saved before templates were
    tried on saving)."""
    created = editor.post(
        "/api/v1/digests", json={"list": "news", "name": "Brief", "schedule": "0 7 * * *"}
    )
    assert created.status_code == 201
    store_template(services, created.json()["id"], part, template)
    return int(created.json()["id"])


@pytest.mark.parametrize(
    "settings_overrides",
    [{"templates": {"render_timeout_seconds": LIMIT_SECONDS, "max_output_bytes": 10**9}}],
)
def test_a_template_that_runs_too_long_is_refused_within_its_limit(
    editor: TestClient, services: Services
) -> None:
    one_article(editor, services)
    digest_id = stored_digest(services, editor, "html", "{{ digest.name }}")
    for part, templates in (("html", TOO_SLOW), ("subject", TOO_SLOW[:2])):
        for template in templates:
            store_template(services, digest_id, part, template)
            started = time.monotonic()
            preview = editor.get(f"/api/v1/digests/{digest_id}/preview")
            took = time.monotonic() - started
            assert preview.status_code == 422, (template, preview.text)
            assert "longer than 1 s" in preview.json()["detail"], template
            assert took < LIMIT_SECONDS + 1.0, (template, took)


@pytest.mark.parametrize("settings_overrides", [{"templates": {"render_timeout_seconds": 60}}])
def test_a_template_that_writes_or_builds_too_much_is_refused(
    editor: TestClient, services: Services
) -> None:
    one_article(editor, services)
    digest_id = stored_digest(services, editor, "html", "{{ digest.name }}")
    for part in ("html", "text"):
        for template in TOO_BIG:
            store_template(services, digest_id, part, template)
            preview = editor.get(f"/api/v1/digests/{digest_id}/preview")
            assert preview.status_code == 422, (template, preview.text)
            assert "more than 2 000 000 bytes" in preview.json()["detail"], template


def test_runaway_templates_are_refused_when_saved(editor: TestClient) -> None:
    for template in (TOO_SLOW[0], TOO_BIG[0], TOO_BIG[3]):
        created = editor.post(
            "/api/v1/digests",
            json={
                "list": "news",
                "name": "Runaway",
                "schedule": "0 7 * * *",
                "html_template": template,
            },
        )
        assert created.status_code == 422, created.text
        assert "html template" in created.json()["detail"]
    assert editor.get("/api/v1/digests").json() == []
    harmless = editor.post(
        "/api/v1/digests",
        json={
            "list": "news",
            "name": "Fine",
            "schedule": "0 7 * * *",
            "subject_template": "{% for a in articles %}{{ a.title }} {% endfor %}",
        },
    )
    assert harmless.status_code == 201, harmless.text
    changed = editor.patch(
        f"/api/v1/digests/{harmless.json()['id']}", json={"subject_template": TOO_SLOW[1]}
    )
    assert changed.status_code == 422 and "longer than" in changed.json()["detail"]
    assert editor.get(f"/api/v1/digests/{harmless.json()['id']}").json()["subject_template"] == (
        "{% for a in articles %}{{ a.title }} {% endfor %}"
    )


@pytest.mark.parametrize(
    "settings_overrides", [{"templates": {"render_timeout_seconds": 4 * LIMIT_SECONDS}}]
)
def test_readers_are_answered_while_a_runaway_preview_renders(
    editor: TestClient, services: Services
) -> None:
    one_article(editor, services)
    digest_id = stored_digest(services, editor, "html", TOO_SLOW[0])
    answers: list[Any] = []
    preview = threading.Thread(
        target=lambda: answers.append(editor.get(f"/api/v1/digests/{digest_id}/preview"))
    )
    preview.start()
    time.sleep(0.2)  # the preview is rendering now
    started = time.monotonic()
    signup = editor.post("/subscribe", json={"email": "reader@example.com"})
    ready = editor.get("/readyz")
    form = editor.get("/forms/default")
    assert signup.status_code == 202 and ready.status_code == 200 and form.status_code == 200
    assert time.monotonic() - started < 2 * LIMIT_SECONDS
    assert preview.is_alive(), "readers were answered while the preview was still rendering"
    preview.join(timeout=4 * LIMIT_SECONDS + 5)
    assert not preview.is_alive()
    assert answers[0].status_code == 422


def test_a_send_of_a_runaway_template_is_skipped_with_the_reason(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    editor.post("/subscribe", json={"email": "ada@example.com"})
    assert editor.post(link_in(smtp.wait_for(1)[-1].message, "/confirm/")).status_code == 200
    one_article(editor, services)
    digest_id = stored_digest(services, editor, "subject", TOO_SLOW[1])
    send = editor.post(f"/api/v1/digests/{digest_id}/send")
    assert send.status_code == 202
    assert send.json()["status"] == "skipped"
    assert "subject template: takes longer than 1 s" in send.json()["reason"]

    store_template(services, digest_id, "html", TOO_BIG[0])
    store_template(services, digest_id, "subject", "")
    clock.advance(minutes=1)
    with session_scope(services.engine) as session:
        row = session.get(Digest, digest_id)
        assert row is not None
        row.next_run_at = clock.now()
        session.add(row)
    [send_id] = run_due_digests(services)
    with session_scope(services.engine) as session:
        scheduled = session.get(Send, send_id)
        assert scheduled is not None
        assert scheduled.status == "skipped" and "more than" in scheduled.reason
    tested = editor.post(
        f"/api/v1/digests/{digest_id}/test", json={"addresses": ["editor@example.com"]}
    )
    assert tested.status_code == 422 and "html template" in tested.json()["detail"]
    assert len(smtp.messages) == 1, "only the confirmation went out"


@pytest.mark.parametrize(
    ("key", "value"),
    [("render_timeout_seconds", 0), ("render_timeout_seconds", -1), ("max_output_bytes", 0)],
)
def test_template_limits_that_refuse_everything_are_refused_at_start(key: str, value: int) -> None:
    with pytest.raises(config.ConfigError, match=f"templates.{key}"):
        config.load(templates={key: value})
