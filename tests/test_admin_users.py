"""Users and API keys at /admin/users: administrators create accounts (the password is
shown once), change roles, disable accounts (their sessions end at once), and create and
revoke API keys; editors are refused; every form needs the session's CSRF token."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from mailer.db import session_scope
from mailer.models import ApiKey, User, UserRole, WebSession
from mailer.services import Services
from tests.admin import PASSWORD, add_account, csrf_of, sign_in
from tests.conftest import count_rows

ADMIN = "chief@example.org"
EDITOR = "editor@example.org"


def make_user(services: Services, email: str, role: UserRole) -> int:
    with session_scope(services.engine) as session:
        user = add_account(session, email, role, services.clock.now())
        assert user.id is not None
        return user.id


@pytest.fixture
def admin(client: TestClient, services: Services) -> TestClient:
    """The client signed in as an administrator."""
    make_user(services, ADMIN, UserRole.admin)
    assert sign_in(client, ADMIN, PASSWORD).status_code == 303
    return client


def csrf(client: TestClient) -> str:
    return csrf_of(client.get("/admin/users").text)


def shown_secret(page: str) -> str:
    found = re.search(r'id="secret" class="secret" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def user_row(page: str, email: str) -> str:
    found = re.search(r"<tr>\s*<td>" + re.escape(email) + r".*?</tr>", page, re.S)
    assert found, f"no row for {email}"
    return found.group(0)


def test_an_admin_creates_an_editor_who_signs_in_with_the_password_shown_once(
    admin: TestClient, services: Services
) -> None:
    answer = admin.post(
        "/admin/users",
        data={"email": "New.Editor@Example.org", "role": "editor", "csrf": csrf(admin)},
        follow_redirects=False,
    )
    assert answer.status_code == 200, "the password is on this answer, not behind a redirect"
    assert "no-store" in answer.headers["cache-control"]
    password = shown_secret(answer.text)
    assert len(password) >= 20 and password not in str(answer.url)
    with session_scope(services.engine) as session:
        stored = session.exec(select(User).where(User.email == "New.Editor@example.org")).one()
        assert stored.role == "editor" and password not in stored.password_hash
    listing = admin.get("/admin/users").text
    assert password not in listing, "shown once"
    assert "editor" in user_row(listing, "New.Editor@example.org")

    admin.cookies.clear()
    assert sign_in(admin, "New.Editor@example.org", password).status_code == 303
    assert "Signed in as New.Editor@example.org" in admin.get("/admin/dashboard").text
    assert admin.get("/admin/users").status_code == 403, "an editor cannot manage users"


def test_an_editor_is_refused_and_does_not_see_the_menu_item(
    client: TestClient, services: Services
) -> None:
    make_user(services, EDITOR, UserRole.editor)
    sign_in(client, EDITOR, PASSWORD)
    dashboard = client.get("/admin/dashboard").text
    assert 'href="/admin/users"' not in dashboard
    page = client.get("/admin/users")
    assert page.status_code == 403 and "administrators" in page.text
    token = csrf_of(dashboard)
    made = client.post(
        "/admin/users", data={"email": "x@example.org", "role": "admin", "csrf": token}
    )
    assert made.status_code == 403
    key = client.post("/admin/users/keys", data={"name": "mine", "csrf": token})
    assert key.status_code == 403
    assert count_rows(services, User) == 1 and count_rows(services, ApiKey) == 0


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"email": "not an address", "role": "editor"}, 422, "Email"),
        ({"email": "", "role": "editor"}, 422, "Email is required"),
        ({"email": "someone@example.org", "role": "owner"}, 422, "Role must be admin or editor"),
        ({"email": "chief@EXAMPLE.org", "role": "editor"}, 409, "already an account"),
    ],
)
def test_a_bad_new_user_is_refused_with_the_form_kept_and_nothing_written(
    admin: TestClient, services: Services, fields: dict[str, str], status: int, message: str
) -> None:
    answer = admin.post("/admin/users", data={**fields, "csrf": csrf(admin)})
    assert answer.status_code == status
    assert message in answer.text and 'id="user-error"' in answer.text
    assert f'value="{fields["email"]}"' in answer.text, "what was typed is kept"
    assert 'id="secret"' not in answer.text
    assert count_rows(services, User) == 1


def test_a_post_without_the_csrf_token_is_refused_and_writes_nothing(
    admin: TestClient, services: Services
) -> None:
    editor_id = make_user(services, EDITOR, UserRole.editor)
    posts = [
        ("/admin/users", {"email": "x@example.org", "role": "editor"}),
        (f"/admin/users/{editor_id}/role", {"role": "admin"}),
        (f"/admin/users/{editor_id}/disable", {}),
        ("/admin/users/keys", {"name": "script"}),
    ]
    for path, fields in posts:
        assert admin.post(path, data=fields).status_code == 403, path
        assert admin.post(path, data={**fields, "csrf": "forged"}).status_code == 403, path
    with session_scope(services.engine) as session:
        editor = session.get(User, editor_id)
        assert editor is not None and editor.role == "editor" and editor.disabled_at is None
    assert count_rows(services, User) == 2 and count_rows(services, ApiKey) == 0


def test_changing_a_role_takes_effect_on_the_next_request(
    admin: TestClient, services: Services
) -> None:
    editor_id = make_user(services, EDITOR, UserRole.editor)
    promoted = admin.post(
        f"/admin/users/{editor_id}/role",
        data={"role": "admin", "csrf": csrf(admin)},
        follow_redirects=False,
    )
    assert promoted.status_code == 303
    assert "admin" in user_row(admin.get("/admin/users").text, EDITOR)

    bad = admin.post(f"/admin/users/{editor_id}/role", data={"role": "owner", "csrf": csrf(admin)})
    assert bad.status_code == 422 and "Role must be admin or editor" in bad.text


def test_the_last_active_admin_cannot_be_demoted_or_disabled(
    admin: TestClient, services: Services
) -> None:
    with session_scope(services.engine) as session:
        me = session.exec(select(User).where(User.email == ADMIN)).one()
    demoted = admin.post(f"/admin/users/{me.id}/role", data={"role": "editor", "csrf": csrf(admin)})
    assert demoted.status_code == 409 and "last active administrator" in demoted.text
    itself = admin.post(f"/admin/users/{me.id}/disable", data={"csrf": csrf(admin)})
    assert itself.status_code == 409 and "cannot disable your own account" in itself.text
    with session_scope(services.engine) as session:
        still = session.get(User, me.id)
        assert still is not None and still.role == "admin" and still.disabled_at is None


def test_disabling_a_user_ends_their_open_session_at_once(
    admin: TestClient, client_factory: TestClient, services: Services
) -> None:
    editor_id = make_user(services, EDITOR, UserRole.editor)
    other = client_factory
    assert sign_in(other, EDITOR, PASSWORD).status_code == 303
    assert "Signed in as editor@example.org" in other.get("/admin/dashboard").text

    confirm = admin.get(f"/admin/users/{editor_id}/disable")
    assert confirm.status_code == 200 and "signed out at once" in confirm.text
    done = admin.post(
        f"/admin/users/{editor_id}/disable",
        data={"csrf": csrf_of(confirm.text)},
        follow_redirects=False,
    )
    assert done.status_code == 303
    listing = admin.get(done.headers["location"]).text
    assert "signed out everywhere" in listing
    assert "disabled" in user_row(listing, EDITOR)

    gone = other.get("/admin/dashboard", follow_redirects=False)
    assert gone.status_code == 303 and gone.headers["location"] == "/admin/"
    assert other.get("/api/v1/lists").status_code == 401, "the cookie no longer opens the API"
    assert sign_in(other, EDITOR, PASSWORD).status_code == 401, "nor can they sign in again"
    with session_scope(services.engine) as session:
        open_sessions = session.exec(
            select(WebSession).where(
                col(WebSession.user_id) == editor_id,
                col(WebSession.ended_at).is_(None),
            )
        ).all()
        assert open_sessions == []


@pytest.fixture
def client_factory(client: TestClient) -> TestClient:
    """A second browser: the same app, its own cookies."""
    second = TestClient(client.app, client=("203.0.113.8", 50000))
    return second


def test_an_api_key_is_shown_once_works_as_a_bearer_and_stops_when_revoked(
    admin: TestClient, services: Services
) -> None:
    answer = admin.post(
        "/admin/users/keys", data={"name": "  Newsroom script ", "csrf": csrf(admin)}
    )
    assert answer.status_code == 200
    key = shown_secret(answer.text)
    assert key.startswith("mk_")
    listing = admin.get("/admin/users").text
    assert key not in listing and "Newsroom script" in listing
    assert key[:10] in listing, "the prefix tells keys apart"

    script = TestClient(admin.app)
    bearer = {"Authorization": f"Bearer {key}"}
    assert script.get("/api/v1/lists", headers=bearer).status_code == 200

    with session_scope(services.engine) as session:
        stored = session.exec(select(ApiKey)).one()
    assert stored.last_used_at == services.clock.now(), "the listing says when it was last used"
    assert services.clock.now().strftime("%Y-%m-%d %H:%M") in admin.get("/admin/users").text
    confirm = admin.get(f"/admin/users/keys/{stored.id}/revoke")
    assert confirm.status_code == 200 and "Revoke “Newsroom script”" in confirm.text
    revoked = admin.post(
        f"/admin/users/keys/{stored.id}/revoke",
        data={"csrf": csrf_of(confirm.text)},
        follow_redirects=False,
    )
    assert revoked.status_code == 303
    assert "revoked" in admin.get(revoked.headers["location"]).text
    assert script.get("/api/v1/lists", headers=bearer).status_code == 401


def test_a_key_needs_a_name(admin: TestClient, services: Services) -> None:
    answer = admin.post("/admin/users/keys", data={"name": "   ", "csrf": csrf(admin)})
    assert answer.status_code == 422 and "Name is required" in answer.text
    assert 'id="key-error"' in answer.text and 'id="secret"' not in answer.text
    assert count_rows(services, ApiKey) == 0
