"""/admin/webhooks: the endpoints that receive signed events, for editors as in the API.

A new endpoint's secret is shown once, on the answer to the form. An endpoint's page edits
it, queues a test event, lists its deliveries with every try, retries failed ones, and
deletes it after a confirmation page.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from sqlmodel import Session

from mailer import accounts
from mailer.errors import Invalid
from mailer.http.deps import ServicesDep, SessionDep
from mailer.models import WebhookEndpoint, WebhookEvent
from mailer.web.admin.common import PostedDep, SignedInDep, redirect, render
from mailer.web.admin.times import time_tag
from mailer.webhooks import endpoints, events, queue

router = APIRouter(prefix="/admin/webhooks")

HOME = "/admin/webhooks"
EVENT_NAMES = [str(event) for event in WebhookEvent]
FIELD_LABELS = {"url": "URL", "events": "Events", "description": "Description"}
DELIVERIES_SHOWN = 50

EventsField = Annotated[list[str], Form(max_length=20)]
UrlField = Annotated[str, Form(max_length=2000)]
DescriptionField = Annotated[str, Form(max_length=200)]


def _message(exc: Invalid) -> str:
    return f"{FIELD_LABELS.get(exc.field, exc.field.capitalize())}: {exc.message.rstrip('.')}."


def _list_page(
    request: Request,
    current: accounts.SignedIn,
    session: Session,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """Every endpoint with its counts, and the form for a new one (refilled after an error)."""
    context.setdefault("new_hook", {"url": "", "events": [], "description": ""})
    counts = queue.counts_by_endpoint(session)
    return render(
        request,
        current,
        "admin/webhooks.html",
        section="webhooks",
        status_code=status_code,
        rows=[(hook, counts.get(hook.id or 0, {})) for hook in endpoints.all_endpoints(session)],
        event_names=EVENT_NAMES,
        **context,
    )


def _endpoint_page(
    request: Request,
    current: accounts.SignedIn,
    session: Session,
    endpoint: WebhookEndpoint,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """One endpoint: its form, its counts and its latest deliveries with their tries."""
    assert endpoint.id is not None
    context.setdefault(
        "form",
        {
            "url": endpoint.url,
            "events": list(endpoint.events),
            "description": endpoint.description,
            "enabled": endpoint.enabled,
        },
    )
    return render(
        request,
        current,
        "admin/webhook.html",
        section="webhooks",
        status_code=status_code,
        hook=endpoint,
        counts=queue.counts_by_endpoint(session).get(endpoint.id, {}),
        deliveries=queue.recent_deliveries(session, endpoint.id, limit=DELIVERIES_SHOWN),
        shown=DELIVERIES_SHOWN,
        event_names=EVENT_NAMES,
        time_tag=time_tag,
        **context,
    )


@router.get("")
def list_page(request: Request, current: SignedInDep, session: SessionDep) -> Response:
    return _list_page(request, current, session)


@router.post("")
def create_endpoint(
    request: Request,
    current: SignedInDep,
    _posted: PostedDep,
    services: ServicesDep,
    session: SessionDep,
    url: UrlField = "",
    events: EventsField = [],  # noqa: B006 - FastAPI copies a form default
    description: DescriptionField = "",
) -> Response:
    """A new endpoint; its signing secret is on this answer only."""
    try:
        endpoint = endpoints.create(
            session,
            url,
            events,
            description,
            services.settings.webhooks,
            services.outbound,
            services.clock.now(),
        )
    except Invalid as exc:
        session.rollback()
        return _list_page(
            request,
            current,
            session,
            status_code=422,
            hook_error=_message(exc),
            new_hook={"url": url, "events": events, "description": description},
        )
    return render(
        request,
        current,
        "admin/webhook_created.html",
        section="webhooks",
        hook=endpoint,
        secret=endpoint.secret,
    )


@router.get("/{webhook_id}")
def endpoint_page(
    request: Request, webhook_id: int, current: SignedInDep, session: SessionDep
) -> Response:
    return _endpoint_page(request, current, session, endpoints.get(session, webhook_id))


@router.post("/{webhook_id}")
def update_endpoint(
    request: Request,
    webhook_id: int,
    current: SignedInDep,
    _posted: PostedDep,
    services: ServicesDep,
    session: SessionDep,
    url: UrlField = "",
    events: EventsField = [],  # noqa: B006 - FastAPI copies a form default
    description: DescriptionField = "",
    enabled: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Changes the URL, events, description and whether it is enabled, all checked first."""
    endpoint = endpoints.get(session, webhook_id)
    try:
        endpoints.update(
            session,
            endpoint,
            services.settings.webhooks,
            services.outbound,
            url=url,
            events=events,
            description=description,
            enabled=bool(enabled),
        )
    except Invalid as exc:
        session.rollback()
        form = {"url": url, "events": events, "description": description, "enabled": enabled}
        return _endpoint_page(
            request,
            current,
            session,
            endpoints.get(session, webhook_id),
            status_code=422,
            hook_error=_message(exc),
            form=form,
        )
    return redirect(f"{HOME}/{webhook_id}", "saved")


@router.post("/{webhook_id}/test")
def send_test_event(
    webhook_id: int,
    _current: SignedInDep,
    _posted: PostedDep,
    services: ServicesDep,
    session: SessionDep,
) -> Response:
    """Queues a `ping` to the endpoint, whatever events it chose."""
    endpoint = endpoints.get(session, webhook_id)
    assert endpoint.id is not None
    data = {"webhook_id": endpoint.id}
    events.queue(session, endpoint.id, events.PING, data, services.clock.now())
    return redirect(f"{HOME}/{webhook_id}", "test-queued")


@router.post("/{webhook_id}/deliveries/{delivery_id}/retry")
def retry_delivery(
    request: Request,
    webhook_id: int,
    delivery_id: int,
    current: SignedInDep,
    _posted: PostedDep,
    services: ServicesDep,
    session: SessionDep,
) -> Response:
    """Puts a failed delivery back in the queue, due now, with a fresh count of tries."""
    endpoint = endpoints.get(session, webhook_id)
    delivery = queue.get_delivery(session, webhook_id, delivery_id)
    try:
        queue.retry_failed(session, delivery, services.clock.now())
    except Invalid as exc:
        session.rollback()
        error = f"Delivery #{delivery_id} {exc.message}."
        return _endpoint_page(request, current, session, endpoint, 422, hook_error=error)
    return redirect(f"{HOME}/{webhook_id}", "retried")


@router.get("/{webhook_id}/delete")
def confirm_delete(
    request: Request, webhook_id: int, current: SignedInDep, session: SessionDep
) -> Response:
    """Asks before deleting: pending deliveries are dropped unsent."""
    endpoint = endpoints.get(session, webhook_id)
    return render(
        request,
        current,
        "admin/webhook_delete.html",
        section="webhooks",
        hook=endpoint,
        counts=queue.counts_by_endpoint(session).get(endpoint.id or 0, {}),
    )


@router.post("/{webhook_id}/delete")
def delete_endpoint(
    webhook_id: int, _current: SignedInDep, _posted: PostedDep, session: SessionDep
) -> Response:
    endpoints.remove(session, endpoints.get(session, webhook_id))
    return redirect(HOME, "deleted")
