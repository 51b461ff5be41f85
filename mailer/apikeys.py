"""Editors' API keys: shown once at creation, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlmodel import Session, col, select

from mailer.models import ApiKey

KEY_PREFIX = "mk_"


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create(session: Session, name: str, now: datetime) -> str:
    """Store a new key named `name` and return it (the only time it is visible)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(name=name, prefix=key[:10], key_hash=_hash(key), created_at=now))
    return key


def authenticate(session: Session, key: str) -> ApiKey | None:
    """The live key matching `key`, or None. Lookup is by hash, so timing reveals nothing."""
    found = session.scalars(select(ApiKey).where(col(ApiKey.key_hash) == _hash(key))).first()
    if found is None or found.revoked_at is not None:
        return None
    return found
