"""Database tables (SQLModel) and the status vocabularies stored in them.

All times are timezone-aware UTC datetimes. Consent events are append-only: the database refuses
deletes and any update other than erasure of personal fields (see the migrations).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, Index, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class SubscriptionStatus(StrEnum):
    pending = "pending"
    confirmed = "confirmed"
    unsubscribed = "unsubscribed"


class ConsentAction(StrEnum):
    requested = "requested"
    confirmed = "confirmed"
    unsubscribed = "unsubscribed"
    resubscribed = "resubscribed"
    preferences_changed = "preferences-changed"
    imported = "imported"
    expired = "expired"
    erased = "erased"


class OutboxStatus(StrEnum):
    queued = "queued"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    superseded = "superseded"


class OutboxKind(StrEnum):
    confirmation = "confirmation"


class MailingList(SQLModel, table=True):
    __tablename__ = "lists"

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(sa_column=Column(String(64), unique=True, nullable=False))
    name: str = Field(max_length=200)
    description: str = Field(default="", max_length=2000)
    created_at: datetime


class Form(SQLModel, table=True):
    __tablename__ = "forms"

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(sa_column=Column(String(64), unique=True, nullable=False))
    name: str = Field(max_length=200)
    heading: str = Field(default="Sign up to receive our latest news!", max_length=500)
    consent_text: str = Field(sa_column=Column(Text, nullable=False))
    consent_version: int = 1
    consent_checkbox: bool = False
    """When true the form shows an unticked box that must be ticked to submit."""
    redirect_url: str = Field(default="", max_length=2000)
    created_at: datetime
    updated_at: datetime


class FormList(SQLModel, table=True):
    __tablename__ = "form_lists"

    form_id: int = Field(foreign_key="forms.id", primary_key=True)
    list_id: int = Field(foreign_key="lists.id", primary_key=True)


class FormConsentVersion(SQLModel, table=True):
    """Every wording a form has shown, so a consent event's version can be looked up."""

    __tablename__ = "form_consent_versions"

    form_id: int = Field(foreign_key="forms.id", primary_key=True)
    version: int = Field(primary_key=True)
    consent_text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime


class Subscriber(SQLModel, table=True):
    __tablename__ = "subscribers"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_column=Column(String(320), unique=True, nullable=False))
    name: str = Field(default="", max_length=200)
    created_at: datetime
    erased_at: datetime | None = None
    chain_head: str = Field(default="", max_length=64)
    """Hash of this subscriber's latest consent event."""
    chain_length: int = 0
    """How many consent events this subscriber has (the latest one's seq)."""
    last_confirmation_at: datetime | None = None
    """When the latest confirmation mail was queued (one per window)."""


class Subscription(SQLModel, table=True):
    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("subscriber_id", "list_id"),)

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscribers.id", index=True)
    list_id: int = Field(foreign_key="lists.id", index=True)
    status: str = Field(default=SubscriptionStatus.pending, max_length=16)
    created_at: datetime
    updated_at: datetime
    confirmed_at: datetime | None = None


class Confirmation(SQLModel, table=True):
    """A pending double opt-in: which lists one confirm token covers, until when."""

    __tablename__ = "confirmations"

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscribers.id", index=True)
    list_ids: list[int] = Field(sa_column=Column(JSON, nullable=False))
    form_id: int | None = Field(default=None, foreign_key="forms.id")
    consent_version: int | None = None
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    revoked_at: datetime | None = None
    """Set when the reader unsubscribed or was erased after this was sent."""


class ConsentEvent(SQLModel, table=True):
    __tablename__ = "consent_events"
    __table_args__ = (UniqueConstraint("subscriber_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscribers.id", index=True)
    seq: int
    action: str = Field(max_length=32)
    at: datetime
    lists: list[str] = Field(sa_column=Column(JSON, nullable=False))
    form: str = Field(default="", max_length=64)
    consent_text: str = Field(default="", sa_column=Column(Text, nullable=False))
    consent_version: int | None = None
    source_url: str = Field(default="", sa_column=Column(Text, nullable=False))
    ip: str = Field(default="", max_length=80)
    user_agent: str = Field(default="", sa_column=Column(Text, nullable=False))
    prev_hash: str = Field(default="", max_length=64)
    hash: str = Field(max_length=64)


class OutboxMessage(SQLModel, table=True):
    """One message waiting to go out; its content is rendered when it is sent."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    subscriber_id: int = Field(foreign_key="subscribers.id", index=True)
    confirmation_id: int | None = Field(default=None, foreign_key="confirmations.id")
    status: str = Field(default=OutboxStatus.queued, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime
    lease_until: datetime | None = None
    last_reply: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_at: datetime
    sent_at: datetime | None = None


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    prefix: str = Field(max_length=16)
    key_hash: str = Field(sa_column=Column(String(64), unique=True, nullable=False))
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
