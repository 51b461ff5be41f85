"""Provider notifications already taken in: the tokens and ids each one used, kept in the
database while the provider's own checks would still pass it, so that a replay is known
as one in every process.

`remember` writes one row per key in the caller's transaction, insert-or-nothing on the
unique (provider, token_hash): of two processes taking in one notification at the same
moment, exactly one inserts (PostgreSQL makes the other wait for its commit). It says
whether the notification is new, the same one again, or another notification under a
key already spent (a captured signature on a forged body).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CursorResult, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from mailer.models import ProviderNotificationToken


class Seen(StrEnum):
    new = "new"
    """No key of the notification was used before: act on it."""
    repeat = "repeat"
    """The same notification again (a provider's retry, or a replay): act on nothing."""
    conflict = "conflict"
    """A key was used before by another notification: a forgery; refuse it."""


@dataclass(frozen=True)
class Key:
    """One thing that identifies a notification, and how long to remember it."""

    value: str
    """`token:<Mailgun token>`, `event:<id>`, `message:<SNS MessageId>`, `record:...`."""
    keep_until: datetime
    """When the provider's checks no longer let a notification with this key through
    (or its retries have ended)."""


@dataclass(frozen=True)
class Identity:
    """What makes a notification the one it is: its keys, and what is acted on."""

    keys: tuple[Key, ...]
    acted_on: str
    """The part of the notification that is read into reports, written canonically
    (`canonical`): the same notification again has the same one."""


def canonical(value: Any) -> str:
    """A JSON value written one way (sorted keys, no spaces), so equal values compare
    equal however the provider spaced or ordered them."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def remember(session: Session, provider: str, identity: Identity, now: datetime) -> Seen:
    """Side effect: a row for each key not seen before (in the caller's transaction,
    which the caller rolls back on `Seen.conflict`)."""
    body_hash = _sha256(identity.acted_on)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    seen = Seen.new
    for key in identity.keys:
        token_hash = _sha256(key.value)
        result = session.execute(
            insert(ProviderNotificationToken)
            .values(
                provider=provider,
                token_hash=token_hash,
                body_hash=body_hash,
                seen_at=now,
                keep_until=key.keep_until,
            )
            .on_conflict_do_nothing(index_elements=["provider", "token_hash"])
            .returning(col(ProviderNotificationToken.id))
        )
        if result.first() is not None:  # inserted: not seen before
            continue
        earlier = session.exec(
            select(ProviderNotificationToken.body_hash).where(
                col(ProviderNotificationToken.provider) == provider,
                col(ProviderNotificationToken.token_hash) == token_hash,
            )
        ).one()
        if earlier != body_hash:
            return Seen.conflict
        seen = Seen.repeat
    return seen


def purge(session: Session, now: datetime) -> int:
    """Side effect: deletes the rows past their `keep_until`; returns how many."""
    result = session.execute(
        delete(ProviderNotificationToken).where(col(ProviderNotificationToken.keep_until) < now)
    )
    assert isinstance(result, CursorResult)
    return int(result.rowcount or 0)
