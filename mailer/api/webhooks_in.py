"""POST /webhooks/bounces/{provider}: providers' bounce and complaint notifications.

A provider's endpoint exists only once it is configured ([bounces] settings); each
notification's signature or credentials are checked by its receiver before anything is
read, and its reports are handled in one transaction, together with the record of its
tokens and ids (mailer.bounces.replay): the same notification again is answered 200
"already processed" (what makes a provider stop retrying) and changes nothing; another
notification under a token or id already spent (a captured signature on a forged body)
is refused with 409 and changes nothing either.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from mailer.bounces import handling, replay
from mailer.bounces.providers.base import Notification, Receiver, Refused
from mailer.bounces.providers.mailgun import MailgunReceiver
from mailer.bounces.providers.postmark import PostmarkReceiver
from mailer.bounces.providers.ses import SesReceiver
from mailer.db import session_scope
from mailer.http.responses import ApiError, Responses
from mailer.schemas import BounceWebhookAnswer
from mailer.services import Services

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024

REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "description": "The provider's notification: SNS's JSON (sent as text/plain) for "
        "ses, the webhook's JSON for postmark and mailgun.",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/plain": {"schema": {"type": "string"}},
        },
    }
}
RESPONSES: Responses = {
    status: {"model": ApiError, "description": description}
    for status, description in {
        400: "The body is not the provider's JSON.",
        401: "Missing or wrong basic-auth credentials (postmark).",
        403: "A bad signature, a topic not accepted, or a notification too old.",
        404: "No such provider, or its webhook is not configured.",
        409: "A token or notification id already used by another notification (a replay "
        "of a captured signature on another body).",
        413: f"The body is larger than {MAX_BODY_BYTES} bytes.",
        503: "A signing certificate or the confirmation URL could not be fetched.",
    }.items()
}


def make_router(services: Services) -> APIRouter:
    """The endpoint, with one receiver per provider (SES's caches signing certificates)."""
    settings = services.settings.bounces
    receivers: dict[str, Receiver] = {
        receiver.name: receiver
        for receiver in (
            SesReceiver(settings, services.signer, services.clock, services.outbound),
            PostmarkReceiver(settings, services.clock),
            MailgunReceiver(settings, services.signer, services.clock),
        )
    }
    router = APIRouter(tags=["bounce webhooks"])

    @router.post(
        "/webhooks/bounces/{provider}",
        response_model=BounceWebhookAnswer,
        responses=RESPONSES,
        openapi_extra=REQUEST_BODY,
    )
    async def receive_bounces(provider: str, request: Request) -> BounceWebhookAnswer:
        """A provider's bounce or complaint notification (provider: ses, postmark or
        mailgun), checked and acted on: hard bounces and complaints suppress the address,
        complaints unsubscribe the reader too."""
        receiver = receivers.get(provider)
        if receiver is None or not receiver.configured:
            raise HTTPException(404, "no bounce webhook for this provider here")
        body = await _read_body(request)
        try:
            notification = await receiver.receive(body, request.headers)
            kinds = await run_in_threadpool(_handle, services, provider, notification)
        except Refused as exc:
            log.info("%s notification refused (%s): %s", provider, exc.status, exc.reason)
            raise HTTPException(exc.status, exc.reason, headers=exc.headers or None) from exc
        reports = len(notification.reports)
        if kinds is None:
            log.info("%s notification already processed: nothing done", provider)
            return BounceWebhookAnswer(reports=reports, recorded=0, already_processed=True)
        log.info(
            "%s notification: %d report(s), recorded %s", provider, reports, dict(kinds) or "none"
        )
        return BounceWebhookAnswer(reports=reports, recorded=sum(kinds.values()))

    return router


def _handle(services: Services, provider: str, notification: Notification) -> Counter[str] | None:
    """Every report of one notification, in one transaction with the record of its
    tokens and ids; the kinds recorded, or None when it was processed before. A
    notification under a spent token or id is `Refused` (409) and writes nothing."""
    kinds: Counter[str] = Counter()
    if not notification.reports and notification.identity is None:
        return kinds
    now = services.clock.now()
    with session_scope(services.engine) as session:
        if notification.identity is not None:
            seen = replay.remember(session, provider, notification.identity, now)
            if seen == replay.Seen.conflict:
                raise Refused(
                    409, "this token or notification id was already used by another notification"
                )
            if seen == replay.Seen.repeat:
                return None
        for report in notification.reports:
            outcome = handling.handle(session, report, services.settings.bounces, now)
            if outcome.kind is not None:
                kinds[outcome.kind.value] += 1
    return kinds


async def _read_body(request: Request) -> bytes:
    """The body, refused with 413 past MAX_BODY_BYTES (checked while reading)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    received = bytearray()
    try:
        async for chunk in request.stream():
            received += chunk
            if len(received) > MAX_BODY_BYTES:
                raise HTTPException(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    except ClientDisconnect as exc:
        raise HTTPException(400, "the client went away before sending the whole body") from exc
    return bytes(received)
