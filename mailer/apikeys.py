"""Editors' API keys: shown once at creation, stored only as a SHA-256 hash; listed by
name and prefix, and revoked (a revoked key stops working at once)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from mailer.errors import Invalid, NotFound
from mailer.models import ApiKey

KEY_PREFIX = "mk_"
MAX_NAME_LENGTH = 200
USE_RECORDED_EVERY = timedelta(minutes=1)
"""`last_used_at` is written at most this often per key, not on every call."""


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_name(name: str) -> str:
    """The key's name, trimmed; Invalid when empty or too long."""
    trimmed = name.strip()
    if not trimmed:
        raise Invalid("name", "is required: say who or what the key is for")
    if len(trimmed) > MAX_NAME_LENGTH:
        raise Invalid("name", f"at most {MAX_NAME_LENGTH} characters")
    return trimmed


def create(session: Session, name: str, now: datetime) -> str:
    """Store a new key named `name` and return it (the only time it is visible)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(name=check_name(name), prefix=key[:10], key_hash=_hash(key), created_at=now))
    session.flush()
    return key


def authenticate(session: Session, key: str, now: datetime | None = None) -> ApiKey | None:
    """The live key matching `key`, or None. Lookup is by hash, so timing reveals nothing.
    Side effect with `now`: the key's `last_used_at` moves forward (at most once a minute)."""
    found = session.scalars(select(ApiKey).where(col(ApiKey.key_hash) == _hash(key))).first()
    if found is None or found.revoked_at is not None:
        return None
    if now is not None and (
        found.last_used_at is None or now - found.last_used_at >= USE_RECORDED_EVERY
    ):
        found.last_used_at = now
    return found


def all_keys(session: Session) -> list[ApiKey]:
    """Every key, live ones first, newest first."""
    return list(
        session.exec(
            select(ApiKey).order_by(
                col(ApiKey.revoked_at).is_not(None),
                col(ApiKey.created_at).desc(),
                col(ApiKey.id).desc(),
            )
        )
    )


def get(session: Session, key_id: int) -> ApiKey:
    found = session.get(ApiKey, key_id)
    if found is None:
        raise NotFound("API key")
    return found


def revoke(session: Session, key_id: int, now: datetime) -> ApiKey:
    """Side effect: the key stops working. Revoking it again changes nothing."""
    found = get(session, key_id)
    if found.revoked_at is None:
        found.revoked_at = now
        session.add(found)
        session.flush()
    return found
