"""The consent ledger: append-only events per subscriber, chained by hash.

Each event's hash covers the previous event's hash and a digest of every field, with
personal fields (source URL, IP, user agent) entering as their own SHA-256 digest. So
erasure can replace those fields by that digest and the chain still verifies, while any
other change to any event breaks it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, col, select

from mailer.models import ConsentAction, ConsentEvent, Subscriber

ERASED_PREFIX = "sha256:"
PERSONAL_FIELDS = ("source_url", "ip", "user_agent")


@dataclass(frozen=True)
class ConsentContext:
    """Who asked, from where, under which wording."""

    form: str = ""
    consent_text: str = ""
    consent_version: int | None = None
    source_url: str = ""
    ip: str = ""
    user_agent: str = ""


def personal_digest(value: str) -> str:
    """The digest a personal field enters the chain as (and is erased to)."""
    if value.startswith(ERASED_PREFIX):
        return value
    return ERASED_PREFIX + hashlib.sha256(value.encode()).hexdigest()


def _canonical_time(at: datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def event_hash(event: ConsentEvent) -> str:
    """The hash an event must carry, given its fields and prev_hash."""
    material = [
        event.prev_hash,
        event.subscriber_id,
        event.seq,
        event.action,
        _canonical_time(event.at),
        list(event.lists),
        event.form,
        event.consent_text,
        event.consent_version,
        *(personal_digest(getattr(event, name)) for name in PERSONAL_FIELDS),
    ]
    encoded = json.dumps(material, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(encoded).hexdigest()


def append(
    session: Session,
    subscriber: Subscriber,
    action: ConsentAction,
    lists: list[str],
    context: ConsentContext,
    at: datetime,
) -> ConsentEvent:
    """Write the next event of `subscriber`'s chain (the caller holds its row lock)."""
    assert subscriber.id is not None
    event = ConsentEvent(
        subscriber_id=subscriber.id,
        seq=subscriber.chain_length + 1,
        action=action.value,
        at=at,
        lists=sorted(lists),
        form=context.form,
        consent_text=context.consent_text,
        consent_version=context.consent_version,
        source_url=context.source_url,
        ip=context.ip,
        user_agent=context.user_agent,
        prev_hash=subscriber.chain_head,
        hash="",
    )
    event.hash = event_hash(event)
    subscriber.chain_head = event.hash
    subscriber.chain_length = event.seq
    session.add(event)
    session.add(subscriber)
    return event


def events_of(session: Session, subscriber_id: int) -> list[ConsentEvent]:
    return list(
        session.scalars(
            select(ConsentEvent)
            .where(col(ConsentEvent.subscriber_id) == subscriber_id)
            .order_by(col(ConsentEvent.seq))
        )
    )


@dataclass(frozen=True)
class ChainReport:
    valid: bool
    events: int
    first_bad_seq: int | None = None
    reason: str = ""


def verify(session: Session, subscriber: Subscriber) -> ChainReport:
    """Recompute the chain of `subscriber` and say whether it is intact."""
    assert subscriber.id is not None
    events = events_of(session, subscriber.id)
    prev = ""
    for expected_seq, event in enumerate(events, start=1):
        if event.seq != expected_seq:
            return ChainReport(False, len(events), event.seq, "an event is missing")
        if event.prev_hash != prev:
            return ChainReport(False, len(events), event.seq, "prev_hash does not match")
        if event_hash(event) != event.hash:
            return ChainReport(False, len(events), event.seq, "event was altered")
        prev = event.hash
    if prev != subscriber.chain_head or len(events) != subscriber.chain_length:
        return ChainReport(False, len(events), None, "latest events are missing")
    return ChainReport(True, len(events))


def erase_personal_fields(session: Session, subscriber_id: int) -> None:
    """Replace the personal fields of every event by their digest; the chain stays valid."""
    for event in events_of(session, subscriber_id):
        for name in PERSONAL_FIELDS:
            setattr(event, name, personal_digest(getattr(event, name)))
        session.add(event)
