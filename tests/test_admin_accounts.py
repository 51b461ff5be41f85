"""Editors' accounts: `mailer user create`, signing in and out of /admin/ with a server-side
session, CSRF tokens on the forms, and throttled failed sign-ins."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from mailer import accounts
from mailer.db import session_scope
from mailer.jobs import purge_job
from mailer.models import User, WebSession
from mailer.services import Services
from tests.admin import EDITOR, PASSWORD, csrf_of, sign_in
from tests.commands import assert_clear_refusal, mailer, operator_env
from tests.conftest import SECRET


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


SLOWDOWN = 0.3
"""login_slowdown_seconds in the tests below: short, so the suite stays fast."""


def behind_proxy(**admin: Any) -> dict[str, Any]:
    """Settings where the test client is a trusted proxy, so each attempt can come from its
    own client IP, with these [admin] settings."""
    return {
        "signup": {"trusted_proxies": ["203.0.113.7/32"]},
        "admin": {"login_slowdown_seconds": SLOWDOWN, **admin},
    }


def attempt(client: TestClient, ip: str, email: str = EDITOR, password: str = PASSWORD) -> Any:
    """A sign-in through the form from a browser at `ip`, with how long the answer took."""
    client.cookies.clear()
    form = client.get("/admin/", headers={"X-Forwarded-For": ip})
    started = time.monotonic()
    answer = client.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf": csrf_of(form.text)},
        headers={"X-Forwarded-For": ip},
        follow_redirects=False,
    )
    answer.elapsed_seconds = time.monotonic() - started
    return answer


@pytest.mark.parametrize("settings_overrides", [behind_proxy()])
def test_an_attacker_failing_on_an_account_does_not_lock_its_owner_out(
    client: TestClient, editor_account: None
) -> None:
    attacker, owner = "198.51.100.66", "192.0.2.10"
    for _ in range(10):
        assert attempt(client, attacker, password="guess").status_code == 401
    assert attempt(client, attacker, password="guess").status_code == 429
    blocked = attempt(client, attacker)
    assert blocked.status_code == 429, "the attacker's client is refused even the right password"
    assert int(blocked.headers["retry-after"]) >= 1

    signed_in = attempt(client, owner)
    assert signed_in.status_code == 303, "the owner, from another address, gets in"
    # The upper bound leaves room for password hashing on a busy machine.
    assert SLOWDOWN <= signed_in.elapsed_seconds < SLOWDOWN + 5, "slowed down, not locked out"
    assert attempt(client, owner, password="guess").status_code == 401
    assert attempt(client, attacker).status_code == 429, "still refused after the owner got in"


@pytest.mark.parametrize("settings_overrides", [behind_proxy(login_attempts_per_ip=6)])
def test_failures_on_many_accounts_from_one_address_hit_its_own_limit(
    client: TestClient, editor_account: None
) -> None:
    sprayer = "198.51.100.7"
    for n in range(6):
        assert attempt(client, sprayer, f"user{n}@example.org", "Winter2026!").status_code == 401
    assert attempt(client, sprayer).status_code == 429, "its next try is refused, any account"
    sprayer_v6 = "2001:db8:5:6::1"
    for n in range(6):
        assert attempt(client, sprayer_v6, f"user{n}@example.org", "guess").status_code == 401
    assert attempt(client, "2001:db8:5:6::ffff").status_code == 429, "an IPv6 client is its /64"
    assert attempt(client, "192.0.2.10").status_code == 303, "another client is not affected"


@pytest.mark.parametrize("settings_overrides", [behind_proxy(login_attempts=4)])
def test_every_spelling_of_an_account_name_counts_as_that_account(
    client: TestClient, editor_account: None
) -> None:
    spellings = [
        "Editor@Example.org",
        "  editor@example.org ",
        "EDITOR@EXAMPLE.ORG",
        "editor @example.org",
    ]
    for spelling in spellings:
        assert attempt(client, "198.51.100.66", spelling, "guess").status_code == 401
    assert attempt(client, "198.51.100.66").status_code == 429
    slowed = attempt(client, "192.0.2.10", " editor@Example.ORG ")
    assert slowed.status_code == 303 and slowed.elapsed_seconds >= SLOWDOWN


@pytest.mark.parametrize("settings_overrides", [behind_proxy(login_attempts=3)])
def test_the_answers_do_not_tell_whether_an_account_exists(
    client: TestClient, editor_account: None
) -> None:
    for account, attacker in [(EDITOR, "198.51.100.1"), ("nobody@example.org", "198.51.100.2")]:
        statuses = [attempt(client, attacker, account, "guess").status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429], account
        later = attempt(client, "192.0.2.10", account, "guess")
        assert later.status_code == 401 and later.elapsed_seconds >= SLOWDOWN, account


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


@pytest.mark.both_databases
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
