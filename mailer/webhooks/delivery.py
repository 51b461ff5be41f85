"""The webhook worker: claim due deliveries, POST each signed payload, record the outcome.

2xx is delivered; any other answer (redirects are not followed), a network error, a
timeout or an endpoint at a private address (mailer.outbound refuses it before connecting)
is a failed try, recorded without the connection's details, and retried with doubling
waits up to [webhooks] max_attempts.
One endpoint's deliveries of a batch go out one after another, in the order they were
queued; different endpoints are served side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from datetime import timedelta

import httpx
from sqlalchemy import Engine

from mailer.clock import Clock
from mailer.config import WebhookSettings
from mailer.db import session_scope
from mailer.logs import redact
from mailer.outbound import Outbound, describe, tls_context
from mailer.webhooks import queue, signing

log = logging.getLogger(__name__)

BATCH_SIZE = 50
CONCURRENCY = 10
BODY_EXCERPT_BYTES = 300
USER_AGENT = "mailer-webhooks"


def headers_for(claimed: queue.Claimed, timestamp: int) -> dict[str, str]:
    """The headers a delivery is sent with, its signature included."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Mailer-Event": claimed.event,
        "X-Mailer-Delivery": str(claimed.delivery_id),
        "X-Mailer-Timestamp": str(timestamp),
        "X-Mailer-Signature": signing.sign(claimed.secret, timestamp, claimed.payload),
    }


class WebhookSender:
    """Delivers due webhook deliveries; several processes may run one each."""

    def __init__(
        self,
        engine: Engine,
        settings: WebhookSettings,
        clock: Clock,
        outbound: Outbound,
        verify: ssl.SSLContext | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.outbound = outbound
        self.verify = verify or tls_context()
        self.wake = asyncio.Event()

    @property
    def lease(self) -> timedelta:
        """Long enough for a whole batch to one endpoint to time out, and some."""
        return timedelta(seconds=self.settings.timeout_seconds * BATCH_SIZE + 60)

    def client(self) -> httpx.AsyncClient:
        """The client deliveries are posted with: no redirects, no proxy from the
        environment, only to addresses [network] permits."""
        return self.outbound.async_client(
            timeout=self.settings.timeout_seconds,
            verify=self.verify,
            headers={"User-Agent": USER_AGENT},
        )

    def _claim(self) -> list[queue.Claimed]:
        with session_scope(self.engine) as session:
            return queue.claim_due(session, self.clock.now(), BATCH_SIZE, self.lease)

    def _record(self, outcomes: list[queue.Outcome]) -> None:
        with session_scope(self.engine) as session:
            for outcome in outcomes:
                status = queue.record(
                    session,
                    outcome,
                    self.settings.max_attempts,
                    self.settings.retry_base_seconds,
                )
                if status != queue.DELIVERED:
                    log.warning(
                        "webhook delivery %s try %s failed (%s): %s",
                        outcome.delivery_id,
                        outcome.attempt,
                        "gave up" if status == queue.FAILED else "will retry",
                        redact(outcome.error),
                        extra={"webhook_delivery_id": outcome.delivery_id},
                    )

    async def _post(self, client: httpx.AsyncClient, claimed: queue.Claimed) -> queue.Outcome:
        """One try at one delivery; never raises for what the endpoint or network does."""
        at = self.clock.now()
        timestamp = int(at.timestamp())
        started = time.monotonic()
        status_code: int | None = None
        error = ""
        try:
            async with client.stream(
                "POST",
                claimed.url,
                content=claimed.payload.encode(),
                headers=headers_for(claimed, timestamp),
            ) as response:
                status_code = response.status_code
                # Reading a short answer to its end lets the connection be used again.
                excerpt = await _start_of_body(response)
                if not 200 <= status_code < 300:
                    error = _refusal(response, excerpt)
        except httpx.TimeoutException as exc:
            error = f"timed out after {self.settings.timeout_seconds:g} s ({type(exc).__name__})"
        except Exception as exc:  # a network error, a bad certificate, a URL httpx refuses
            error = describe(exc)
        duration_ms = int((time.monotonic() - started) * 1000)
        return queue.Outcome(
            claimed.delivery_id, claimed.attempt, at, status_code, error, duration_ms
        )

    async def deliver_due_once(self, client: httpx.AsyncClient | None = None) -> int:
        """Claim one batch of due deliveries, send them, record the outcomes; returns how
        many were tried."""
        claimed = await asyncio.to_thread(self._claim)
        if not claimed:
            return 0
        async with contextlib.AsyncExitStack() as stack:
            if client is None:
                client = await stack.enter_async_context(self.client())
            semaphore = asyncio.Semaphore(CONCURRENCY)
            by_endpoint: dict[int, list[queue.Claimed]] = {}
            for item in claimed:
                by_endpoint.setdefault(item.endpoint_id, []).append(item)

            async def post_in_order(items: list[queue.Claimed]) -> list[queue.Outcome]:
                async with semaphore:
                    return [await self._post(client, item) for item in items]

            groups = await asyncio.gather(*(post_in_order(g) for g in by_endpoint.values()))
            outcomes = [outcome for group in groups for outcome in group]
        await asyncio.to_thread(self._record, outcomes)
        return len(claimed)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set, polling every [webhooks] poll_interval_seconds."""
        log.info("webhook sender started")
        async with self.client() as client:
            while not stop.is_set():
                tried = 0
                try:
                    tried = await self.deliver_due_once(client)
                except Exception:
                    log.exception("webhook loop error; retrying shortly")
                if tried:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.poll_interval_seconds)


async def _start_of_body(response: httpx.Response) -> bytes:
    """Up to BODY_EXCERPT_BYTES of the answer's body; the rest is never read."""
    excerpt = b""
    async for chunk in response.aiter_raw():
        excerpt += chunk
        if len(excerpt) >= BODY_EXCERPT_BYTES:
            break
    return excerpt[:BODY_EXCERPT_BYTES]


def _refusal(response: httpx.Response, excerpt: bytes) -> str:
    """The status and the start of the answer's body (for a redirect: where it pointed)."""
    if response.is_redirect:
        location = response.headers.get("location", "?")[:200]
        return f"HTTP {response.status_code}: redirect to {location} (not followed)"
    text = excerpt.decode("utf-8", "replace").strip()
    return f"HTTP {response.status_code}" + (f": {text}" if text else "")
