"""Digests: a list's newsletter definition (schedule, topics, size, templates)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from sqlmodel import Session, col, select

from mailer.content.articles import normalize_topics
from mailer.content.schedules import next_run_of, trigger, zone
from mailer.errors import Conflict, Invalid, NotFound
from mailer.models import Digest
from mailer.subscriptions.addresses import check_header_safe
from mailer.subscriptions.catalog import list_by_slug

EDITABLE = (
    "name",
    "schedule",
    "timezone",
    "send_at",
    "topics",
    "max_articles",
    "subject_template",
    "html_template",
    "text_template",
    "enabled",
)


class TemplateCheck(Protocol):
    """What checking a digest asks of the mail renderer (`delivery.render.MailRenderer`)."""

    def digest_template_problem(self, fields: Mapping[str, Any]) -> str | None:
        """What is wrong with the templates among a digest's `fields`, or None."""
        ...


def check(fields: dict[str, Any], renderer: TemplateCheck) -> dict[str, Any]:
    """Refuse a bad schedule, time zone or template (Invalid) before anything is
    written; `fields` are a digest's editable fields, or some of them.

    The templates are tried on sample articles, so one that runs past its time or size
    limits is refused here: call it before any transaction begins."""
    if "timezone" in fields:
        zone(fields["timezone"])
    if fields.get("schedule"):
        trigger(fields["schedule"], fields.get("timezone", "UTC"))
    problem = renderer.digest_template_problem(fields)
    if problem is not None:
        raise Invalid("template", problem)
    return fields


def reschedule(digest: Digest, now: datetime) -> None:
    """Set when `digest` is next due, after a change of its schedule or state."""
    digest.next_run_at = next_run_of(digest, now)


def get(session: Session, digest_id: int) -> Digest:
    digest = session.get(Digest, digest_id)
    if digest is None:
        raise NotFound("digest")
    return digest


def by_name(session: Session, name: str) -> Digest:
    digest = session.exec(select(Digest).where(col(Digest.name) == name)).first()
    if digest is None:
        raise NotFound(f"digest {name!r}")
    return digest


def all_digests(session: Session) -> list[Digest]:
    return list(session.exec(select(Digest).order_by(col(Digest.name))))


def create(session: Session, list_slug: str, fields: dict[str, Any], now: datetime) -> Digest:
    mailing_list = list_by_slug(session, list_slug)
    assert mailing_list.id is not None
    digest = Digest(list_id=mailing_list.id, name="", created_at=now, updated_at=now)
    return apply(session, digest, fields, now)


def apply(session: Session, digest: Digest, fields: dict[str, Any], now: datetime) -> Digest:
    """Set the editable `fields` on `digest` after checking them."""
    for name, value in fields.items():
        if name not in EDITABLE:
            raise Invalid(name, "cannot be changed")
        setattr(digest, name, value)
    digest.name = check_header_safe("name", digest.name.strip())
    if not digest.name:
        raise Invalid("name", "is required")
    digest.schedule = " ".join(digest.schedule.split())
    if not digest.schedule and digest.send_at is None:
        raise Invalid("schedule", "give a cron schedule or a one-off send_at")
    digest.topics = normalize_topics(digest.topics)
    clash = session.exec(
        select(Digest).where(col(Digest.name) == digest.name, col(Digest.id) != digest.id)
    ).first()
    if clash is not None:
        raise Conflict(f"a digest named {digest.name!r} exists")
    digest.updated_at = now
    session.add(digest)
    session.flush()
    return digest


def delete(session: Session, digest: Digest) -> None:
    """Remove a digest that never sent; one with sends is kept for its record (Conflict)."""
    from mailer.models import Send

    if session.exec(select(Send).where(col(Send.digest_id) == digest.id)).first() is not None:
        raise Conflict("the digest has sends on record; disable it instead (enabled: false)")
    session.delete(digest)
