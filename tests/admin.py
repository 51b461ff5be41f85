"""Fixtures and helpers for tests of /admin/ over HTTP, loaded as a pytest plugin by
conftest: an editor's account, signing in through the form, and the CSRF token a page
carries."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailer import accounts
from mailer.db import session_scope
from mailer.models import UserRole
from mailer.services import Services

EDITOR = "editor@example.org"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def editor_account(services: Services) -> None:
    with session_scope(services.engine) as session:
        accounts.create_user(session, EDITOR, UserRole.editor, PASSWORD, services.clock.now())


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def sign_in(client: TestClient, email: str = EDITOR, password: str = PASSWORD) -> Any:
    form = client.get("/admin/")
    return client.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf": csrf_of(form.text)},
        follow_redirects=False,
    )


@pytest.fixture
def signed_in(editor: TestClient, editor_account: None) -> TestClient:
    """The `editor` client (API key) also signed in to /admin/ as an editor."""
    assert sign_in(editor).status_code == 303
    return editor
