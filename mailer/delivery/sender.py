"""The sender loop: claim due outbox rows, compose, deliver, record the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import col, select

from mailer.clock import Clock
from mailer.config import SenderSettings
from mailer.db import session_scope
from mailer.delivery import outbox, sends
from mailer.delivery.compose import Composer, Envelope, NothingToSend
from mailer.delivery.transport import DeliveryError, Transport
from mailer.metrics import Metrics
from mailer.models import OutboxMessage, OutboxStatus

log = logging.getLogger(__name__)


class Sender:
    def __init__(
        self,
        engine: Engine,
        transport: Transport,
        composer: Composer,
        settings: SenderSettings,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self.engine = engine
        self.transport = transport
        self.composer = composer
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        self.wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def notify(self) -> None:
        """Wake the loop early (callable from any thread): new mail was queued."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.wake.set)

    def _claim_and_compose(self) -> tuple[int, list[tuple[int, int, Envelope]], set[int]]:
        """Claim a batch and compose each message; rows with nothing to send are closed.
        Returns how many rows were claimed, the messages, and the sends they belong to."""
        now = self.clock.now()
        lease = timedelta(seconds=self.settings.lease_seconds)
        with session_scope(self.engine) as session:
            ids = outbox.claim_due(session, now, self.settings.batch_size, lease)
        composed: list[tuple[int, int, Envelope]] = []
        send_ids: set[int] = set()
        if not ids:
            return 0, composed, send_ids
        with session_scope(self.engine) as session:
            rows = list(session.exec(select(OutboxMessage).where(col(OutboxMessage.id).in_(ids))))
            self.composer.prefetch(session, rows)
            for row in rows:
                assert row.id is not None
                if row.send_id is not None:
                    send_ids.add(row.send_id)
                try:
                    envelope = self.composer.compose(session, row, now)
                except NothingToSend as exc:
                    row.status = OutboxStatus.superseded
                    row.lease_until = None
                    row.last_reply = str(exc)
                    session.add(row)
                else:
                    composed.append((row.id, row.attempts, envelope))
            sends.mark_sending(session, send_ids, now)
        return len(ids), composed, send_ids

    async def run_once(self) -> int:
        """Deliver one batch of due messages; returns how many rows were handled."""
        claimed, batch, send_ids = await asyncio.to_thread(self._claim_and_compose)
        semaphore = asyncio.Semaphore(self.settings.concurrency)
        sent: list[tuple[int, str]] = []
        failed: list[tuple[int, int, DeliveryError]] = []

        async def deliver(message_id: int, attempts: int, envelope: Envelope) -> None:
            async with semaphore:
                try:
                    reply = await self.transport.send(
                        envelope.sender, envelope.recipient, envelope.data
                    )
                except DeliveryError as exc:
                    failed.append((message_id, attempts, exc))
                else:
                    sent.append((message_id, reply))

        await asyncio.gather(*(deliver(i, a, e) for i, a, e in batch))
        if sent or failed or send_ids:
            await asyncio.to_thread(self._record, sent, failed, send_ids)
        return claimed

    def _record(
        self,
        sent: list[tuple[int, str]],
        failed: list[tuple[int, int, DeliveryError]],
        send_ids: set[int],
    ) -> None:
        """Record a batch's outcomes in one transaction, then close finished sends."""
        now = self.clock.now()
        failures = []
        for message_id, attempts, exc in failed:
            retry_at = None
            if not exc.permanent and attempts < self.settings.max_attempts:
                retry_at = now + outbox.retry_delay(attempts, self.settings.retry_base_seconds)
            failures.append(outbox.Failure(message_id, exc.reply, retry_at))
            (self.metrics.mail_deferred if retry_at else self.metrics.mail_failed).inc()
            log.warning(
                "delivery of outbox row %s failed (%s): %s",
                message_id,
                "will retry" if retry_at else "final",
                exc.reply,
            )
        with session_scope(self.engine) as session:
            outbox.record_outcomes(session, sent, failures, now)
            sends.close_finished(session, send_ids, now)
        self.metrics.mail_sent.inc(len(sent))

    async def run_forever(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        log.info("sender started: %s", self.transport.describe())
        while not stop.is_set():
            try:
                attempted = await self.run_once()
            except Exception:
                log.exception("sender loop error; retrying shortly")
                attempted = 0
            if attempted:
                continue
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wait(stop), self.settings.poll_interval_seconds)
        await self.transport.close()

    async def _wait(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
