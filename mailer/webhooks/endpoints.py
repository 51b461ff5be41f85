"""Editors' webhook endpoints: register, change, remove, and the rules a URL must meet.

A URL must be https:// with a host name and no user name or password in it; plain http://
is accepted only with [webhooks] allow_http, which is meant for a development machine. A
host that is a private address in any spelling, or this machine's name, is refused here
already (unless [network] allowed_private_networks has it); names are checked when each
delivery connects (mailer.outbound). Removing an endpoint deletes its deliveries,
pending ones included, and their attempts.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete
from sqlmodel import Session, col, select

from mailer.config import WebhookSettings
from mailer.errors import Invalid, NotFound
from mailer.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from mailer.outbound import REFUSED, Outbound
from mailer.webhooks import signing
from mailer.webhooks.events import forget_endpoints


def check_url(url: str, settings: WebhookSettings, outbound: Outbound) -> str:
    """The URL, trimmed, if an endpoint may have it; Invalid (a 422) otherwise."""
    url = url.strip()
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise Invalid("url", "must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
        httpx.URL(url)  # the worker sends with httpx: what it refuses is refused here
    except (ValueError, httpx.InvalidURL) as exc:
        raise Invalid("url", "not a valid URL") from exc
    allowed = ("https", "http") if settings.allow_http else ("https",)
    if parts.scheme not in allowed:
        raise Invalid("url", "must start with https://")
    if not parts.hostname:
        raise Invalid("url", "has no host")
    if parts.username is not None or parts.password is not None:
        raise Invalid("url", "must not carry a user name or password")
    if parts.fragment:
        raise Invalid("url", "must not have a #fragment")
    if outbound.refuses_without_lookup(httpx.URL(url).host):
        raise Invalid("url", REFUSED)
    return url


def check_description(description: str) -> str:
    """The description, trimmed, if it is plain text on one line."""
    description = description.strip()
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in description):
        raise Invalid("description", "must be one line without control characters")
    return description


def check_events(events: Iterable[str]) -> list[str]:
    """The events, known ones only, without repeats, in the order given."""
    known = {str(event) for event in WebhookEvent}
    chosen: list[str] = []
    for event in events:
        if event not in known:
            raise Invalid("events", f"unknown event {event!r}")
        if event not in chosen:
            chosen.append(event)
    if not chosen:
        raise Invalid("events", "choose at least one event")
    return chosen


def get(session: Session, endpoint_id: int) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound("webhook")
    return endpoint


def all_endpoints(session: Session) -> list[WebhookEndpoint]:
    return list(session.exec(select(WebhookEndpoint).order_by(col(WebhookEndpoint.id))))


def create(
    session: Session,
    url: str,
    events: Iterable[str],
    description: str,
    settings: WebhookSettings,
    outbound: Outbound,
    now: datetime,
) -> WebhookEndpoint:
    """Side effect: a new enabled endpoint with a fresh secret."""
    endpoint = WebhookEndpoint(
        url=check_url(url, settings, outbound),
        events=check_events(events),
        description=check_description(description),
        secret=signing.new_secret(),
        enabled=True,
        created_at=now,
    )
    session.add(endpoint)
    session.flush()
    forget_endpoints(session)
    return endpoint


def update(
    session: Session,
    endpoint: WebhookEndpoint,
    settings: WebhookSettings,
    outbound: Outbound,
    *,
    url: str | None = None,
    events: Iterable[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> WebhookEndpoint:
    """Side effect: the given fields changed (all checked before any is set)."""
    new_url = check_url(url, settings, outbound) if url is not None else endpoint.url
    new_events = check_events(events) if events is not None else endpoint.events
    new_description = check_description(description) if description is not None else None
    endpoint.url = new_url
    endpoint.events = list(new_events)
    if new_description is not None:
        endpoint.description = new_description
    if enabled is not None:
        endpoint.enabled = enabled
    session.add(endpoint)
    session.flush()
    forget_endpoints(session)
    return endpoint


def remove(session: Session, endpoint: WebhookEndpoint) -> None:
    """Side effect: the endpoint is gone with all its deliveries (pending ones are dropped,
    not sent) and their attempts."""
    deliveries = select(WebhookDelivery.id).where(col(WebhookDelivery.endpoint_id) == endpoint.id)
    session.execute(delete(WebhookAttempt).where(col(WebhookAttempt.delivery_id).in_(deliveries)))
    session.execute(delete(WebhookDelivery).where(col(WebhookDelivery.endpoint_id) == endpoint.id))
    session.delete(endpoint)
    session.flush()
    forget_endpoints(session)
