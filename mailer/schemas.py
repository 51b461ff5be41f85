"""Editors' API models: what requests carry in and what answers show (never raw rows)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _with_offset(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("needs a UTC offset, e.g. 2026-03-30T07:00:00+02:00 or ...Z")
    try:
        value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("is out of range") from exc
    return value


Moment = Annotated[datetime, AfterValidator(_with_offset)]
"""A point in time given with its offset (a naive time is ambiguous), that UTC can hold."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListCreate(Strict):
    slug: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    welcome_enabled: bool = False
    welcome_articles: int = Field(default=0, ge=0, le=20)
    archive_enabled: bool = False


class ListUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    welcome_enabled: bool | None = None
    welcome_articles: int | None = Field(default=None, ge=0, le=20)
    archive_enabled: bool | None = None


class ListPublic(BaseModel):
    id: int
    slug: str
    name: str
    description: str
    welcome_enabled: bool
    welcome_articles: int
    archive_enabled: bool
    created_at: datetime


class FormCreate(Strict):
    slug: str = Field(min_length=1, max_length=64)
    lists: list[str] = Field(min_length=1, max_length=50)
    consent_text: str = Field(min_length=1, max_length=5000)
    redirect_url: str | None = Field(default=None, max_length=2000)
    name: str = Field(default="", max_length=200)
    heading: str = Field(default="", max_length=500)
    consent_checkbox: bool = False
    thanks_message: str = Field(default="", max_length=2000)
    allowed_hosts: list[str] | None = Field(default=None, max_length=20)
    """Hosts (besides this server's) that redirect_url may be on; when left out, the host
    of redirect_url."""


class FormUpdate(Strict):
    lists: list[str] | None = Field(default=None, min_length=1, max_length=50)
    consent_text: str | None = Field(default=None, min_length=1, max_length=5000)
    redirect_url: str | None = Field(default=None, max_length=2000)
    name: str | None = Field(default=None, max_length=200)
    heading: str | None = Field(default=None, max_length=500)
    consent_checkbox: bool | None = None
    thanks_message: str | None = Field(default=None, max_length=2000)
    allowed_hosts: list[str] | None = Field(default=None, max_length=20)


class FormPublic(BaseModel):
    id: int
    slug: str
    name: str
    heading: str
    lists: list[str]
    consent_text: str
    consent_version: int
    consent_checkbox: bool
    redirect_url: str
    allowed_hosts: list[str]
    thanks_message: str
    form_url: str
    embed_snippet: str


class SubscriptionPublic(BaseModel):
    slug: str
    name: str
    status: str
    subscribed_at: datetime
    confirmed_at: datetime | None


class ConsentEventPublic(BaseModel):
    seq: int
    action: str
    at: datetime
    lists: list[str]
    form: str
    consent_text: str
    consent_version: int | None
    source_url: str
    ip: str
    user_agent: str
    hash: str


class SuppressionPublic(BaseModel):
    reason: str
    detail: str
    """The relay's reply (or report) that caused it."""
    at: datetime


class SubscriberPublic(BaseModel):
    id: int
    email: str
    name: str
    created_at: datetime
    erased: bool
    suppression: SuppressionPublic | None = None
    """Set when the address gets no more mail (e.g. the relay said it does not exist)."""
    lists: list[SubscriptionPublic]
    consent_events: list[ConsentEventPublic]


class DeliveryAttemptPublic(BaseModel):
    attempt: int
    at: datetime
    outcome: str
    """`sent`, `deferred` (retried later) or `failed` (given up)."""
    reply: str
    """The relay's answer, e.g. "250 2.0.0 Ok: queued" or "451 4.7.1 Try again later"."""


class SendMessagePublic(BaseModel):
    """One recipient of a send and every attempt to deliver their message."""

    id: int
    subscriber_id: int
    email: str
    status: str
    """queued, held (its send is paused), sending, sent, failed, or superseded (dropped:
    the reader left or is suppressed, or the send was cancelled)."""
    attempts: list[DeliveryAttemptPublic]
    last_reply: str
    sent_at: datetime | None


class ChainVerification(BaseModel):
    subscriber_id: int
    valid: bool
    events: int
    first_bad_seq: int | None
    reason: str


class Erased(BaseModel):
    id: int
    erased: bool


class ArticleIn(Strict):
    url: str = Field(min_length=8, max_length=2000)
    title: str = Field(min_length=1, max_length=1000)
    summary: str = Field(default="", max_length=10_000)
    author: str = Field(default="", max_length=300)
    image_url: str = Field(default="", max_length=2000)
    topics: list[str] = Field(default_factory=list, max_length=20)
    published_at: Moment


class ArticlePublic(BaseModel):
    id: int
    url: str
    title: str
    summary: str
    author: str
    image_url: str
    topics: list[str]
    published_at: datetime
    created_at: datetime
    updated_at: datetime


class DigestCreate(Strict):
    list_slug: str = Field(alias="list", min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    schedule: str = Field(default="", max_length=200)
    timezone: str = Field(default="UTC", max_length=64)
    send_at: Moment | None = None
    topics: list[str] = Field(default_factory=list, max_length=20)
    max_articles: int = Field(default=10, ge=1, le=100)
    subject_template: str = Field(default="", max_length=2000)
    html_template: str = Field(default="", max_length=200_000)
    text_template: str = Field(default="", max_length=100_000)
    enabled: bool = True


class DigestUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    schedule: str | None = Field(default=None, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    send_at: Moment | None = None
    topics: list[str] | None = Field(default=None, max_length=20)
    max_articles: int | None = Field(default=None, ge=1, le=100)
    subject_template: str | None = Field(default=None, max_length=2000)
    html_template: str | None = Field(default=None, max_length=200_000)
    text_template: str | None = Field(default=None, max_length=100_000)
    enabled: bool | None = None


class DigestPublic(BaseModel):
    id: int
    list_slug: str = Field(alias="list")
    name: str
    schedule: str
    timezone: str
    send_at: datetime | None
    topics: list[str]
    max_articles: int
    subject_template: str
    html_template: str
    text_template: str
    enabled: bool
    next_run_at: datetime | None
    next_runs: list[datetime]
    last_sent_at: datetime | None


class SendPublic(BaseModel):
    id: int
    digest_id: int | None
    status: str
    reason: str
    total: int
    sent: int
    failed: int
    pending: int
    dropped: int
    subject: str
    article_ids: list[int]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    rate: float | None = None
    """Messages handled per second since the send started (until it finished)."""
    eta_seconds: float | None = None
    """Seconds until the pending messages are out at that rate; None when unknown."""


class SchedulePreview(BaseModel):
    """When a cron expression runs next in a time zone."""

    schedule: str
    timezone: str
    described: str
    """The schedule in words, e.g. "weekdays at 07:00"."""
    next_runs: list[datetime]
    """The next five run times, with the time zone's offset."""
    labels: list[str]
    """The same run times as editors read them ("Mon 30 Mar 2026, 07:00 CEST")."""


class Preview(BaseModel):
    subject: str
    html: str
    text: str
    articles: list[ArticlePublic]


class TestSend(Strict):
    addresses: list[str] = Field(min_length=1, max_length=20)


class TestSendResult(BaseModel):
    sent: list[str]
    failed: dict[str, str]


class FeedCreate(Strict):
    url: str = Field(min_length=8, max_length=2000)
    name: str = Field(default="", max_length=200)
    interval_minutes: int = Field(default=15, ge=1, le=24 * 60)
    topic_map: dict[str, str] = Field(default_factory=dict, max_length=200)
    default_topics: list[str] = Field(default_factory=list, max_length=20)
    enabled: bool = True


class FeedPublic(BaseModel):
    id: int
    url: str
    name: str
    interval_minutes: int
    topic_map: dict[str, str]
    default_topics: list[str]
    enabled: bool
    next_poll_at: datetime | None
    last_polled_at: datetime | None
    last_status: str
    last_error: str
    last_new: int


class PollOutcome(BaseModel):
    status: str
    new: int
    updated: int
    error: str


class BounceEventPublic(BaseModel):
    """A bounce, delay or complaint as recorded (its detail has no addresses)."""

    id: int
    at: datetime
    kind: str
    """hard, soft, policy (the operator's problem: the reader is kept) or complaint."""
    status: str
    action: str
    source: str
    """smtp, dsn, arf, or the provider's name (ses, postmark, mailgun)."""
    outbox_id: int | None
    subscriber_id: int | None
    detail: str


class BounceWebhookAnswer(BaseModel):
    """What a provider's notification came to."""

    reports: int
    """Recipients it reported on (0 for notifications that are not bounces or complaints)."""
    recorded: int
    """Of those, the ones recorded as bounce events (readers of ours, and failures)."""
    already_processed: bool = False
    """The same notification was taken in before: this one changed nothing."""
