"""Fixtures and helpers for tests of /admin/ over HTTP, loaded as a pytest plugin by
conftest: an editor's account, signing in through the form, and the CSRF token a page
carries."""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailer import accounts
from mailer.db import session_scope
from mailer.models import User, UserRole
from mailer.services import Services
from mailer.subscriptions.addresses import normalize_email

EDITOR = "editor@example.org"
PASSWORD = "correct horse battery staple"


@functools.cache
def password_hash() -> str:
    """PASSWORD's Argon2 hash, made once per test process (each one takes a tenth of a
    second): every test account signs in with the same password."""
    return accounts.hash_password(PASSWORD)


def add_account(session: Any, email: str, role: UserRole, now: datetime) -> User:
    """An account that signs in with PASSWORD, stored as `accounts.create_user` stores one
    (whose own checks are tested in test_admin_accounts)."""
    user = User(
        email=normalize_email(email), password_hash=password_hash(), role=role, created_at=now
    )
    session.add(user)
    session.flush()
    return user


@pytest.fixture
def editor_account(services: Services) -> None:
    with session_scope(services.engine) as session:
        add_account(session, EDITOR, UserRole.editor, services.clock.now())


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
