"""Editors' accounts: `mailer user create`, signing in and out of /admin/ with a server-side
session, CSRF tokens on the forms, and throttled failed sign-ins."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from mailer import accounts
from mailer.db import session_scope
from mailer.models import User, WebSession
from mailer.scheduling import purge_job
from mailer.services import Services
from tests.admin import EDITOR, PASSWORD, csrf_of, sign_in
from tests.conftest import SECRET
from tests.test_cli import assert_clear_refusal, mailer, operator_env


def test_the_command_creates_an_account_with_a_generated_password(
    database_url: str, services: Services, tmp_path: Path
) -> None:
    env = operator_env(MAILER_DATABASE__URL=database_url, MAILER_SECRET_KEY=SECRET)
    made = mailer("user", "create", "Chief@Example.org", "--role", "admin", cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    password = made.stdout.strip().splitlines()[-1]
    assert len(password) >= 20
    with session_scope(services.engine) as session:
        user = session.exec(select(User)).one()
        assert (user.email, user.role) == ("Chief@example.org", "admin")
        assert password not in user.password_hash and user.password_hash.startswith("$argon2")
        assert accounts.authenticate(session, "Chief@example.org", password) is not None

    again = mailer("user", "create", "Chief@example.org", cwd=tmp_path, env=env)
    assert_clear_refusal(again, "already an account")
    wrong_role = mailer("user", "create", "x@example.org", "--role", "owner", cwd=tmp_path, env=env)
    assert_clear_refusal(wrong_role, "owner")
    bad = mailer("user", "create", "not an address", cwd=tmp_path, env=env)
    assert_clear_refusal(bad)
    with session_scope(services.engine) as session:
        assert len(session.exec(select(User)).all()) == 1, "refusals write nothing"


def test_signing_in_opens_a_session_that_signing_out_ends(
    client: TestClient, editor_account: None
) -> None:
    login = client.get("/admin/")
    assert login.status_code == 200 and 'type="password"' in login.text
    assert login.headers["x-frame-options"] == "DENY"
    assert "no-store" in login.headers["cache-control"]

    answer = sign_in(client)
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/dashboard"
    cookie = answer.headers["set-cookie"]
    assert "mailer_session=" in cookie and "HttpOnly" in cookie
    assert "SameSite=strict" in cookie and "Path=/;" in cookie
    token = client.cookies.get("mailer_session")

    home = client.get("/admin/")
    assert f"Signed in as {EDITOR}" in home.text

    refused = client.post("/admin/logout", data={"csrf": "forged"})
    assert refused.status_code == 403, "signing out needs the session's CSRF token"
    assert "Signed in as" in client.get("/admin/").text

    out = client.post("/admin/logout", data={"csrf": csrf_of(home.text)}, follow_redirects=False)
    assert out.status_code == 303
    assert 'type="password"' in client.get("/admin/").text
    client.cookies.set("mailer_session", token or "", path="/")
    assert 'type="password"' in client.get("/admin/").text, "the old cookie is dead"


def test_a_wrong_password_or_a_forged_form_opens_no_session(
    client: TestClient, editor_account: None
) -> None:
    wrong = sign_in(client, password="not the password")
    assert wrong.status_code == 401 and "do not match" in wrong.text
    unknown = sign_in(client, email="nobody@example.org")
    assert unknown.status_code == 401 and "do not match" in unknown.text, "same answer"
    assert "mailer_session" not in client.cookies

    client.get("/admin/")
    forged = client.post(
        "/admin/login",
        data={"email": EDITOR, "password": PASSWORD, "csrf": "made-up"},
        follow_redirects=False,
    )
    assert forged.status_code == 403, "a sign-in form posted from elsewhere is refused"
    assert "mailer_session" not in client.cookies
    missing = client.post("/admin/login", data={"email": EDITOR})
    assert missing.status_code == 422


@pytest.mark.parametrize("settings_overrides", [{"admin": {"login_attempts": 3}}])
def test_repeated_failures_are_throttled_even_with_the_right_password(
    client: TestClient, editor_account: None
) -> None:
    for _ in range(3):
        assert sign_in(client, password="guess").status_code == 401
    blocked = sign_in(client)
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    assert "mailer_session" not in client.cookies


def test_a_disabled_account_cannot_sign_in_and_loses_its_sessions(
    client: TestClient, services: Services, editor_account: None
) -> None:
    assert sign_in(client).status_code == 303
    with session_scope(services.engine) as session:
        user = session.exec(select(User)).one()
        user.disabled_at = services.clock.now()
        session.add(user)
    assert 'type="password"' in client.get("/admin/").text
    assert sign_in(client).status_code == 401


def test_the_purge_drops_sign_ins_that_ended_or_expired_and_keeps_live_ones(
    client: TestClient, services: Services, editor_account: None
) -> None:
    assert sign_in(client).status_code == 303
    home = client.get("/admin/")
    client.post("/admin/logout", data={"csrf": csrf_of(home.text)}, follow_redirects=False)
    assert sign_in(client).status_code == 303  # a second, live session
    purge_job(services)
    with session_scope(services.engine) as session:
        assert len(session.exec(select(WebSession)).all()) == 1, "the ended one is gone"
    assert "Signed in as" in client.get("/admin/").text, "the live one still works"

    services.clock.advance(hours=services.settings.admin.session_hours + 1)  # type: ignore[attr-defined]
    purge_job(services)
    with session_scope(services.engine) as session:
        assert session.exec(select(WebSession)).all() == []
