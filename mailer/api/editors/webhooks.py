"""/api/v1/webhooks: endpoints that receive signed events, and their deliveries."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from mailer.api.deps import EditorDep
from mailer.http.deps import ServicesDep, SessionDep
from mailer.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from mailer.schemas import Strict
from mailer.webhooks import endpoints, events, queue

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class WebhookCreate(Strict):
    url: str = Field(min_length=1, max_length=2000)
    events: list[str] = Field(min_length=1, max_length=20)
    """Event names, e.g. subscriber.created, send.finished."""
    description: str = Field(default="", max_length=200)


class WebhookUpdate(Strict):
    url: str | None = Field(default=None, min_length=1, max_length=2000)
    events: list[str] | None = Field(default=None, min_length=1, max_length=20)
    description: str | None = Field(default=None, max_length=200)
    enabled: bool | None = None


class WebhookPublic(BaseModel):
    id: int
    url: str
    description: str
    events: list[str]
    enabled: bool
    created_at: datetime
    pending: int = 0
    delivered: int = 0
    failed: int = 0


class WebhookCreated(WebhookPublic):
    secret: str
    """The signing key: shown in this answer only."""


class WebhookAttemptPublic(BaseModel):
    at: datetime
    status_code: int | None
    error: str
    duration_ms: int


class WebhookDeliveryPublic(BaseModel):
    id: int
    event: str
    status: str
    """pending, delivered or failed (given up after max_attempts)."""
    attempts: int
    """Tries so far (since the last manual retry, which starts a fresh round)."""
    in_flight: bool
    """A worker holds it now: a try is under way."""
    next_attempt_at: datetime | None
    """When the next try is due; null once delivered or failed."""
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]
    attempt_log: list[WebhookAttemptPublic]


def public(endpoint: WebhookEndpoint, counts: dict[str, int] | None = None) -> WebhookPublic:
    return WebhookPublic.model_validate(
        {**endpoint.model_dump(exclude={"secret"}), **(counts or {})}
    )


def counts_for(session: Session, endpoint: WebhookEndpoint) -> dict[str, int]:
    return queue.counts_by_endpoint(session).get(endpoint.id or 0, {})


def delivery_public(
    delivery: WebhookDelivery, attempts: list[WebhookAttempt]
) -> WebhookDeliveryPublic:
    return WebhookDeliveryPublic(
        id=delivery.id or 0,
        event=delivery.event,
        status=delivery.status,
        attempts=delivery.attempts,
        in_flight=delivery.status == queue.PENDING and delivery.lease_until is not None,
        next_attempt_at=delivery.next_attempt_at if delivery.status == queue.PENDING else None,
        created_at=delivery.created_at,
        delivered_at=delivery.delivered_at,
        payload=json.loads(delivery.payload),
        attempt_log=[
            WebhookAttemptPublic.model_validate(attempt, from_attributes=True)
            for attempt in attempts
        ],
    )


@router.post("", status_code=201, response_model=WebhookCreated)
def create_webhook(
    body: WebhookCreate, session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> WebhookCreated:
    """Register an endpoint; the answer carries its signing `secret`, shown only here."""
    endpoint = endpoints.create(
        session,
        body.url,
        body.events,
        body.description,
        services.settings.webhooks,
        services.outbound,
        services.clock.now(),
    )
    return WebhookCreated.model_validate(
        {**public(endpoint).model_dump(), "secret": endpoint.secret}
    )


@router.get("", response_model=list[WebhookPublic])
def list_webhooks(session: SessionDep, _editor: EditorDep) -> list[WebhookPublic]:
    """Every endpoint, with how many of its deliveries are pending, delivered, failed."""
    counts = queue.counts_by_endpoint(session)
    return [
        public(endpoint, counts.get(endpoint.id or 0))
        for endpoint in endpoints.all_endpoints(session)
    ]


@router.get("/{webhook_id}", response_model=WebhookPublic)
def get_webhook(webhook_id: int, session: SessionDep, _editor: EditorDep) -> WebhookPublic:
    endpoint = endpoints.get(session, webhook_id)
    return public(endpoint, counts_for(session, endpoint))


@router.patch("/{webhook_id}", response_model=WebhookPublic)
def update_webhook(
    webhook_id: int,
    body: WebhookUpdate,
    session: SessionDep,
    services: ServicesDep,
    _editor: EditorDep,
) -> WebhookPublic:
    """Change the URL, events or description, or disable the endpoint (its deliveries then
    wait until it is enabled again)."""
    endpoint = endpoints.get(session, webhook_id)
    endpoints.update(
        session,
        endpoint,
        services.settings.webhooks,
        services.outbound,
        **body.model_dump(exclude_unset=True),
    )
    return public(endpoint, counts_for(session, endpoint))


@router.delete("/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: int, session: SessionDep, _editor: EditorDep) -> Response:
    """Remove the endpoint with all its deliveries: pending ones are dropped, not sent."""
    endpoints.remove(session, endpoints.get(session, webhook_id))
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=list[WebhookDeliveryPublic])
def list_deliveries(
    webhook_id: int,
    session: SessionDep,
    _editor: EditorDep,
    status: Annotated[str | None, Query(pattern="^(pending|delivered|failed)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[WebhookDeliveryPublic]:
    """The endpoint's deliveries, newest first, each with its attempts (oldest first)."""
    endpoints.get(session, webhook_id)
    found = queue.recent_deliveries(session, webhook_id, status=status, limit=limit)
    return [delivery_public(delivery, attempts) for delivery, attempts in found]


@router.post("/{webhook_id}/deliveries/{delivery_id}/retry", response_model=WebhookDeliveryPublic)
def retry_delivery(
    webhook_id: int,
    delivery_id: int,
    session: SessionDep,
    services: ServicesDep,
    _editor: EditorDep,
) -> WebhookDeliveryPublic:
    """Send a failed delivery again, now; 422 for one that has not failed."""
    delivery = queue.get_delivery(session, webhook_id, delivery_id)
    queue.retry_failed(session, delivery, services.clock.now())
    return delivery_public(delivery, queue.attempts_of(session, [delivery_id])[delivery_id])


@router.post("/{webhook_id}/test", status_code=202, response_model=WebhookDeliveryPublic)
def test_webhook(
    webhook_id: int, session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> WebhookDeliveryPublic:
    """Queue a `ping` event to this endpoint (whatever events it subscribed to)."""
    endpoint = endpoints.get(session, webhook_id)
    assert endpoint.id is not None
    now = services.clock.now()
    delivery = events.queue(session, endpoint.id, events.PING, {"webhook_id": endpoint.id}, now)
    session.flush()
    return delivery_public(delivery, [])
