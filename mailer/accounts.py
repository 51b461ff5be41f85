"""Editors' accounts: users with argon2 password hashes, and server-side browser sessions.

A session cookie carries a random token; the database keeps only its SHA-256, with the
session's CSRF token and expiry. Signing out ends the session on the server.
Administrators list users, change their role and disable them (which ends their
sessions); the last active administrator cannot be removed.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from pwdlib import PasswordHash
from sqlalchemy import delete, func, or_, update
from sqlmodel import Session, col, select

from mailer.errors import Conflict, Invalid, NotFound
from mailer.models import User, UserRole, WebSession
from mailer.subscriptions.addresses import normalize_email

_hasher = PasswordHash.recommended()


@functools.cache
def _dummy_hash() -> str:
    """A hash to check unknown addresses against, made on the first sign-in of the process
    (not at import: every CLI command would pay for it)."""
    return _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """The password's Argon2 hash, as stored."""
    return _hasher.hash(password)


MIN_PASSWORD_LENGTH = 12


class WeakPassword(Invalid):
    """The password is too short to protect an editor's account."""

    def __init__(self, message: str) -> None:
        super().__init__("password", message)

    @property
    def detail(self) -> str:
        return self.message


class LastAdmin(Conflict):
    """The change would leave no active administrator (or lock the acting one out)."""


def generate_password() -> str:
    """A strong random password (24 URL-safe characters) for a new account."""
    return secrets.token_urlsafe(18)


def parse_role(value: str) -> UserRole:
    """The role named `value`; Invalid for anything else."""
    try:
        return UserRole(value)
    except ValueError as exc:
        roles = " or ".join(role.value for role in UserRole)
        raise Invalid("role", f"must be {roles}, not {value!r}") from exc


def create_user(session: Session, email: str, role: UserRole, password: str, now: datetime) -> User:
    """Side effect: a new user. Conflict if the address has an account already."""
    address = normalize_email(email)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if session.exec(select(User.id).where(col(User.email) == address)).first() is not None:
        raise Conflict(f"there is already an account for {address}")
    user = User(email=address, password_hash=hash_password(password), role=role, created_at=now)
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The active user with this address and password, or None. An unknown address costs
    the same hashing work as a known one, so timing does not tell accounts apart."""
    dummy = _dummy_hash()  # first, for known and unknown addresses alike
    try:
        address = normalize_email(email)
    except Invalid:
        address = ""
    user = session.exec(select(User).where(col(User.email) == address)).first()
    if user is None or user.disabled_at is not None:
        _hasher.verify(password, dummy)
        return None
    return user if _hasher.verify(password, user.password_hash) else None


@dataclass(frozen=True)
class SignedIn:
    user: User
    session: WebSession

    def accepts(self, csrf_token: str) -> bool:
        """Whether a form or script sent this session's CSRF token (constant time)."""
        return hmac.compare_digest(csrf_token.encode(), self.session.csrf_token.encode())


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(session: Session, user: User, now: datetime, lifetime: timedelta) -> str:
    """Side effect: a new browser session for `user`. Returns the cookie's token."""
    assert user.id is not None
    token = secrets.token_urlsafe(32)
    session.add(
        WebSession(
            token_hash=_digest(token),
            user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    session.flush()
    return token


def signed_in(session: Session, token: str, now: datetime) -> SignedIn | None:
    """The user and session behind a cookie token, if the session is still open."""
    if not token or len(token) > 200:
        return None
    row = session.exec(
        select(WebSession, User)
        .join(User, col(User.id) == WebSession.user_id)
        .where(col(WebSession.token_hash) == _digest(token))
    ).first()
    if row is None:
        return None
    web_session, user = row
    if web_session.ended_at is not None or web_session.expires_at <= now:
        return None
    if user.disabled_at is not None:
        return None
    return SignedIn(user, web_session)


def end_session(session: Session, web_session: WebSession, now: datetime) -> None:
    """Side effect: the session can no longer be used."""
    web_session.ended_at = now
    session.add(web_session)
    session.flush()


def purge_sessions(session: Session, now: datetime) -> int:
    """Side effect: deletes the sessions that expired or were ended; returns how many."""
    result = session.execute(
        delete(WebSession).where(
            or_(col(WebSession.expires_at) <= now, col(WebSession.ended_at).is_not(None))
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def all_users(session: Session) -> list[User]:
    """Every account, active ones first, by address."""
    return list(
        session.exec(select(User).order_by(col(User.disabled_at).is_not(None), col(User.email)))
    )


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("user")
    return user


def _active_admins(session: Session) -> int:
    return int(
        session.exec(
            select(func.count())
            .select_from(User)
            .where(col(User.role) == UserRole.admin, col(User.disabled_at).is_(None))
        ).one()
    )


def _keep_an_admin(session: Session, user: User) -> None:
    if user.role == UserRole.admin and user.disabled_at is None and _active_admins(session) <= 1:
        raise LastAdmin(f"{user.email} is the last active administrator")


def set_role(session: Session, user_id: int, role: UserRole) -> User:
    """Side effect: the user's role changes (on their next request). LastAdmin when it
    would demote the last active administrator."""
    user = get_user(session, user_id)
    if user.role == role:
        return user
    if role != UserRole.admin:
        _keep_an_admin(session, user)
    user.role = role
    session.add(user)
    session.flush()
    return user


def disable_user(session: Session, user_id: int, acting_user_id: int, now: datetime) -> User:
    """Side effects: the user can no longer sign in and all their sessions end at once.
    LastAdmin when `acting_user_id` disables themself or the last active administrator."""
    user = get_user(session, user_id)
    if user.id == acting_user_id:
        raise LastAdmin("you cannot disable your own account")
    if user.disabled_at is not None:
        return user
    _keep_an_admin(session, user)
    user.disabled_at = now
    session.add(user)
    session.execute(
        update(WebSession)
        .where(col(WebSession.user_id) == user_id, col(WebSession.ended_at).is_(None))
        .values(ended_at=now)
    )
    session.flush()
    return user
