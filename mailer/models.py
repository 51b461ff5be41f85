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
    merged = "merged"
    """Another subscriber row with the same canonical address was folded into this one;
    its events precede this one in the chain (see migration 0012)."""


class OutboxStatus(StrEnum):
    queued = "queued"
    held = "held"
    """Queued, but its send is paused: left out of claims until the send resumes."""
    sending = "sending"
    sent = "sent"
    failed = "failed"
    superseded = "superseded"


UNDELIVERED = (OutboxStatus.queued, OutboxStatus.held, OutboxStatus.sending)
"""Outbox rows in these states are still to be delivered (or dropped)."""


class OutboxKind(StrEnum):
    confirmation = "confirmation"
    digest = "digest"
    welcome = "welcome"


class SendStatus(StrEnum):
    queued = "queued"
    sending = "sending"
    paused = "paused"
    done = "done"
    cancelled = "cancelled"
    skipped = "skipped"


class MailingList(SQLModel, table=True):
    __tablename__ = "lists"

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(sa_column=Column(String(64), unique=True, nullable=False))
    name: str = Field(max_length=200)
    description: str = Field(default="", max_length=2000)
    welcome_enabled: bool = False
    """Send a welcome mail (templates/emails/welcome.*) right after a reader confirms."""
    welcome_articles: int = 0
    """How many of the latest articles the welcome mail shows."""
    archive_enabled: bool = False
    """Publish past digests at /archive/<slug> and its RSS feed."""
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
    allowed_hosts: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )
    """Hosts (besides this server's) that the redirect URL may point to."""
    thanks_message: str = Field(
        default="", sa_column=Column(Text, nullable=False, server_default="")
    )
    """Shown on the form's thank-you page instead of the standard text; empty: standard."""
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
    """The address mail goes to, spelled as the reader first typed it."""
    email_key: str = Field(sa_column=Column(String(320), unique=True, index=True, nullable=False))
    """The canonical address (addresses.address_key): what identifies the reader; every
    lookup by address uses it, so `Reader@Example.org` and `reader@example.org` are one."""
    name: str = Field(default="", max_length=200)
    created_at: datetime
    erased_at: datetime | None = None
    chain_head: str = Field(default="", max_length=64)
    """Hash of this subscriber's latest consent event."""
    chain_length: int = 0
    """How many consent events this subscriber has (the latest one's seq)."""
    last_confirmation_at: datetime | None = None
    """When the latest confirmation mail was queued (one per window)."""


class SubscriberMerge(SQLModel, table=True):
    """A subscriber row folded into another with the same canonical address (migration
    0012): links already sent that name the merged id act on the survivor."""

    __tablename__ = "subscriber_merges"

    merged_id: int = Field(primary_key=True)
    subscriber_id: int = Field(foreign_key="subscribers.id")
    merged_at: datetime


class Subscription(SQLModel, table=True):
    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("subscriber_id", "list_id"),)

    id: int | None = Field(default=None, primary_key=True)
    subscriber_id: int = Field(foreign_key="subscribers.id", index=True)
    list_id: int = Field(foreign_key="lists.id", index=True)
    status: str = Field(default=SubscriptionStatus.pending, max_length=16)
    topics: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    """The topics this reader wants from the list's digests, sorted; empty means all."""
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
    at: datetime = Field(index=True)
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
    send_id: int | None = Field(default=None, foreign_key="sends.id", index=True)
    variant_id: int | None = Field(default=None, foreign_key="send_variants.id")
    """Which rendering of the send this recipient gets (by their topic preferences)."""
    list_id: int | None = Field(default=None, foreign_key="lists.id")
    """The list a welcome mail is about."""
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


class Article(SQLModel, table=True):
    """A published story; the URL identifies it (re-ingesting updates, never duplicates)."""

    __tablename__ = "articles"
    __table_args__ = (Index("ix_articles_published_at", "published_at"),)

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_column=Column(String(2000), unique=True, nullable=False))
    title: str = Field(sa_column=Column(Text, nullable=False))
    summary: str = Field(default="", sa_column=Column(Text, nullable=False))
    author: str = Field(default="", max_length=300)
    image_url: str = Field(default="", max_length=2000)
    topics: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    published_at: datetime
    created_at: datetime
    updated_at: datetime


class Digest(SQLModel, table=True):
    """A scheduled newsletter of a list: which articles, when, and how it looks."""

    __tablename__ = "digests"

    id: int | None = Field(default=None, primary_key=True)
    list_id: int = Field(foreign_key="lists.id", index=True)
    name: str = Field(sa_column=Column(String(200), unique=True, nullable=False))
    schedule: str = Field(default="", max_length=200)
    """A cron expression in `timezone`; empty for a one-off digest (see send_at)."""
    timezone: str = Field(default="UTC", max_length=64)
    send_at: datetime | None = None
    topics: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    max_articles: int = 10
    subject_template: str = Field(default="", sa_column=Column(Text, nullable=False))
    html_template: str = Field(default="", sa_column=Column(Text, nullable=False))
    text_template: str = Field(default="", sa_column=Column(Text, nullable=False))
    enabled: bool = True
    next_run_at: datetime | None = Field(default=None, index=True)
    last_sent_at: datetime | None = None
    """The end of the window the previous send covered: the next one starts here."""
    created_at: datetime
    updated_at: datetime


class Send(SQLModel, table=True):
    """One sending of a digest: its rendered body and, through the outbox, its recipients."""

    __tablename__ = "sends"
    __table_args__ = (UniqueConstraint("digest_id", "scheduled_for"),)

    id: int | None = Field(default=None, primary_key=True)
    digest_id: int | None = Field(default=None, foreign_key="digests.id", index=True)
    list_id: int = Field(foreign_key="lists.id")
    status: str = Field(default=SendStatus.queued, max_length=16)
    reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    scheduled_for: datetime
    """The due time this send claims (unique per digest: one send per run)."""
    window_start: datetime
    window_end: datetime
    subject: str = Field(default="", sa_column=Column(Text, nullable=False))
    html: str = Field(default="", sa_column=Column(Text, nullable=False))
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    article_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    total: int = 0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class SendVariant(SQLModel, table=True):
    """A send rendered for readers who chose some of the list's topics."""

    __tablename__ = "send_variants"

    id: int | None = Field(default=None, primary_key=True)
    send_id: int = Field(foreign_key="sends.id", index=True)
    topics: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    subject: str = Field(default="", sa_column=Column(Text, nullable=False))
    html: str = Field(default="", sa_column=Column(Text, nullable=False))
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    article_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class DigestArticle(SQLModel, table=True):
    """Articles a digest has carried, so none goes out twice in the same digest."""

    __tablename__ = "digest_articles"

    digest_id: int = Field(foreign_key="digests.id", primary_key=True)
    article_id: int = Field(foreign_key="articles.id", primary_key=True)
    send_id: int = Field(foreign_key="sends.id")


class Feed(SQLModel, table=True):
    """An RSS or Atom feed polled for articles."""

    __tablename__ = "feeds"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_column=Column(String(2000), unique=True, nullable=False))
    name: str = Field(default="", max_length=200)
    interval_minutes: int = 15
    topic_map: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    """Feed category -> topic; categories not in the map become topics as they are."""
    default_topics: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    enabled: bool = True
    next_poll_at: datetime | None = Field(default=None, index=True)
    last_polled_at: datetime | None = None
    last_status: str = Field(default="", max_length=16)
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False))
    last_new: int = 0
    failures: int = 0
    etag: str = Field(default="", max_length=500)
    modified: str = Field(default="", max_length=200)
    created_at: datetime


class SuppressionReason(StrEnum):
    hard_bounce = "hard-bounce"
    """The address does not exist (5.1.1, 5.1.10), said in the SMTP dialogue or a DSN."""
    soft_bounce = "soft-bounce"
    """Too many temporary failures (4.x.x, 5.2.2, delayed) within the configured window."""
    complaint = "complaint"
    """The reader marked mail as spam (an ARF abuse report or a provider's complaint)."""


class Suppression(SQLModel, table=True):
    """An address that gets no more mail (a relay said it does not exist, ...).

    Keyed by the address's SHA-256 so that it outlives erasure of the subscriber."""

    __tablename__ = "suppressions"

    id: int | None = Field(default=None, primary_key=True)
    address_hash: str = Field(sa_column=Column(String(64), unique=True, nullable=False))
    subscriber_id: int | None = Field(default=None, foreign_key="subscribers.id", index=True)
    reason: str = Field(max_length=32)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False))
    """The reply or report that caused it."""
    created_at: datetime


class BounceKind(StrEnum):
    hard = "hard"
    """The address is dead: suppressed at once."""
    soft = "soft"
    """Temporary (4.x.x, delayed, mailbox full): suppressed only after repeated ones."""
    policy = "policy"
    """Refused by the receiver's policy (5.7.x): the sender's problem; the operator is
    alerted and the reader kept."""
    complaint = "complaint"
    """An abuse report: the reader is unsubscribed and suppressed."""


class BounceEvent(SQLModel, table=True):
    """A bounce, delay or complaint about one message, from whichever channel it came:
    the SMTP dialogue, a DSN or ARF report by mail, or a provider's webhook."""

    __tablename__ = "bounce_events"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    kind: str = Field(max_length=16)
    status: str = Field(default="", max_length=16)
    """The RFC 3463 status ("5.1.1"), or "" when the report had none."""
    action: str = Field(default="", max_length=32)
    """The DSN action (failed, delayed) or the ARF feedback type (abuse)."""
    source: str = Field(max_length=32)
    """smtp (the dialogue), dsn, arf, or the provider's name (ses, postmark, ...)."""
    outbox_id: int | None = Field(default=None, index=True)
    subscriber_id: int | None = Field(default=None, foreign_key="subscribers.id", index=True)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False))
    """The diagnostic the receiver gave (no addresses: they are cut out)."""


class DeliveryAttempt(SQLModel, table=True):
    """An attempt to deliver an outbox row that did not succeed, with the relay's reply.

    A successful attempt is the outbox row itself (`sent_at`, `last_reply`)."""

    __tablename__ = "delivery_attempts"

    id: int | None = Field(default=None, primary_key=True)
    outbox_id: int = Field(foreign_key="outbox.id", index=True)
    attempt: int
    at: datetime
    outcome: str = Field(max_length=16)
    """`deferred` (will be retried) or `failed` (given up)."""
    reply: str = Field(default="", sa_column=Column(Text, nullable=False))


class Worker(SQLModel, table=True):
    """A running sender; rate limits are divided among the live ones."""

    __tablename__ = "workers"

    id: str = Field(primary_key=True, max_length=64)
    host: str = Field(default="", max_length=255)
    pid: int = 0
    started_at: datetime
    heartbeat_at: datetime = Field(index=True)


class UserRole(StrEnum):
    admin = "admin"
    editor = "editor"


class User(SQLModel, table=True):
    """An editor or administrator of the web interface."""

    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_column=Column(String(320), unique=True, nullable=False))
    password_hash: str = Field(max_length=255)
    role: str = Field(default=UserRole.editor, max_length=16)
    created_at: datetime
    disabled_at: datetime | None = None


class WebSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "web_sessions"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(sa_column=Column(String(64), unique=True, nullable=False))
    user_id: int = Field(foreign_key="users.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None = None


class WebhookEvent(StrEnum):
    subscriber_created = "subscriber.created"
    subscriber_confirmed = "subscriber.confirmed"
    subscriber_unsubscribed = "subscriber.unsubscribed"
    subscriber_bounced = "subscriber.bounced"
    send_started = "send.started"
    send_finished = "send.finished"


class WebhookEndpoint(SQLModel, table=True):
    """An editor's HTTPS endpoint and the events it wants."""

    __tablename__ = "webhook_endpoints"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2000)
    description: str = Field(default="", max_length=200)
    events: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    secret: str = Field(max_length=128)
    """The HMAC key the deliveries are signed with (shown to the editor once)."""
    enabled: bool = True
    created_at: datetime


class WebhookDelivery(SQLModel, table=True):
    """One event to deliver to one endpoint: a durable queue row, retried with backoff."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    endpoint_id: int = Field(foreign_key="webhook_endpoints.id", index=True)
    event: str = Field(max_length=64)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    """The exact JSON body sent (and signed)."""
    status: str = Field(default="pending", max_length=16)
    """pending, delivered or failed (given up)."""
    attempts: int = 0
    next_attempt_at: datetime
    lease_until: datetime | None = None
    created_at: datetime
    delivered_at: datetime | None = None


class WebhookAttempt(SQLModel, table=True):
    """One try at a webhook delivery and what the endpoint answered."""

    __tablename__ = "webhook_attempts"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="webhook_deliveries.id", index=True)
    at: datetime
    status_code: int | None = None
    error: str = Field(default="", sa_column=Column(Text, nullable=False))
    duration_ms: int = 0


class ProviderNotificationToken(SQLModel, table=True):
    """A token or notification id that a provider's webhook has used, kept while a
    notification carrying it could still pass its provider's checks, so that a replay
    (the same notification again, or a captured signature on another body) is not
    acted on twice (see mailer.bounces.replay)."""

    __tablename__ = "provider_notification_tokens"
    __table_args__ = (
        UniqueConstraint("provider", "token_hash", name="uq_provider_notification_tokens_provider"),
    )

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=32)
    token_hash: str = Field(max_length=64)
    """SHA-256 (hex) of what identifies the notification: `token:<Mailgun token>`,
    `event:<Mailgun event id>`, `message:<SNS MessageId>`, `record:<Postmark record>`."""
    body_hash: str = Field(max_length=64)
    """SHA-256 (hex) of the part of the notification acted on: a second use with the same
    one is the same notification again, with another one a forgery."""
    seen_at: datetime
    keep_until: datetime = Field(index=True)
    """After this, the provider's own checks (its timestamp window) refuse the
    notification, so the row may go."""
