"""The sender loop: claim due outbox rows, compose, deliver, record the outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import col, select

from mailer.clock import Clock
from mailer.config import SenderSettings
from mailer.db import session_scope
from mailer.delivery import outbox, sends, workers
from mailer.delivery.compose import Composer, Envelope, NothingToSend
from mailer.delivery.throttle import Throttle
from mailer.delivery.transport import DeliveryError, Transport
from mailer.metrics import Metrics
from mailer.models import OutboxMessage, OutboxStatus, Subscriber, SuppressionReason
from mailer.subscriptions import suppression

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claimed:
    """A claimed outbox row, composed and ready to deliver."""

    message_id: int
    attempt: int
    created_at: datetime
    subscriber_id: int
    envelope: Envelope

    @property
    def domain(self) -> str:
        return self.envelope.recipient.rpartition("@")[2].lower()


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
        self.throttle = Throttle(settings)
        self.worker_id = workers.new_id()
        self.wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._held: list[int] = []
        """Ids of the batch being delivered: their lease is renewed while this sender lives."""

    def notify(self) -> None:
        """Wake the loop early (callable from any thread): new mail was queued."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.wake.set)

    def _claim_and_compose(self) -> tuple[int, list[Claimed], set[int]]:
        """Claim a batch and compose each message; rows with nothing to send are closed.
        Returns how many rows were claimed, the messages, and the sends they belong to."""
        now = self.clock.now()
        lease = timedelta(seconds=self.settings.lease_seconds)
        with session_scope(self.engine) as session:
            ids = outbox.claim_due(session, now, self.settings.batch_size, lease)
        composed: list[Claimed] = []
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
                    composed.append(
                        Claimed(row.id, row.attempts, row.created_at, row.subscriber_id, envelope)
                    )
            sends.mark_sending(session, send_ids, now)
        return len(ids), composed, send_ids

    async def run_once(self) -> int:
        """Deliver one batch of due messages within the limits; returns how many rows were
        handled."""
        claimed, batch, send_ids = await asyncio.to_thread(self._claim_and_compose)
        self._held = [item.message_id for item in batch]
        semaphore = asyncio.Semaphore(self.settings.concurrency)
        sent: list[tuple[int, str]] = []
        failed: list[tuple[Claimed, DeliveryError]] = []

        async def deliver(item: Claimed) -> None:
            async with self.throttle.domain(item.domain), semaphore, self.throttle.slot():
                envelope = item.envelope
                try:
                    reply = await self.transport.send(
                        envelope.sender, envelope.recipient, envelope.data
                    )
                except DeliveryError as exc:
                    if exc.asks_to_slow_down:
                        self.throttle.slow_down()
                        self.metrics.slowdowns.inc()
                    failed.append((item, exc))
                else:
                    sent.append((item.message_id, reply))

        try:
            await asyncio.gather(*(deliver(item) for item in batch))
        finally:
            self._held = []
        if sent or failed or send_ids:
            await asyncio.to_thread(self._record, sent, failed, send_ids)
        self.metrics.send_rate.set(self.throttle.observed_rate())
        return claimed

    def _record(
        self,
        sent: list[tuple[int, str]],
        failed: list[tuple[Claimed, DeliveryError]],
        send_ids: set[int],
    ) -> None:
        """Record a batch's outcomes in one transaction, suppress addresses that do not
        exist, then close finished sends."""
        now = self.clock.now()
        max_age = timedelta(hours=self.settings.max_age_hours)
        failures = []
        bad_addresses: list[tuple[int, str]] = []
        for item, exc in failed:
            retry_at = None
            reply = exc.reply
            if not exc.permanent and item.attempt < self.settings.max_attempts:
                retry_at = now + outbox.retry_delay(item.attempt, self.settings.retry_base_seconds)
                if retry_at > item.created_at + max_age:
                    retry_at = None
                    reply = f"{reply} (given up: queued over {self.settings.max_age_hours:g} h ago)"
            if exc.address_is_bad:
                bad_addresses.append((item.subscriber_id, exc.reply))
            failures.append(outbox.Failure(item.message_id, item.attempt, reply, retry_at))
            (self.metrics.mail_deferred if retry_at else self.metrics.mail_failed).inc()
            log.warning(
                "delivery of outbox row %s failed (%s): %s",
                item.message_id,
                "will retry" if retry_at else "final",
                exc.reply,
            )
        with session_scope(self.engine) as session:
            outbox.record_outcomes(session, sent, failures, now)
            for subscriber_id, reply in bad_addresses:
                subscriber = session.get(Subscriber, subscriber_id)
                if subscriber is not None:
                    suppression.suppress(
                        session, subscriber, SuppressionReason.hard_bounce, reply, now
                    )
                    log.info("subscriber %s suppressed: the relay said %s", subscriber_id, reply)
            sends.close_finished(session, send_ids, now)
        self.metrics.mail_sent.inc(len(sent))
        self.metrics.mail_suppressed.inc(len(bad_addresses))

    def heartbeat_once(self) -> None:
        """Heartbeat: count live senders (the limits are divided among them) and keep the
        lease on the batch in hand."""
        now = self.clock.now()
        stale = timedelta(seconds=3 * self.settings.heartbeat_seconds)
        with session_scope(self.engine) as session:
            live = workers.beat(session, self.worker_id, now, stale)
            held = list(self._held)
            outbox.extend_lease(session, held, now + timedelta(seconds=self.settings.lease_seconds))
        self.throttle.set_share(live)
        self.metrics.live_senders.set(live)
        limit = self.throttle.rate()
        self.metrics.rate_limit.set(limit if limit is not None else 0)

    def leave(self) -> None:
        with session_scope(self.engine) as session:
            workers.leave(session, self.worker_id)

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.heartbeat_once)
            except Exception:
                log.exception("sender heartbeat failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.heartbeat_seconds)

    async def run_forever(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        log.info("sender %s started: %s", self.worker_id, self.transport.describe())
        heartbeat = asyncio.create_task(self._heartbeat(stop))
        try:
            await self._deliver_until(stop)
        finally:
            stop.set()
            await heartbeat
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.leave)
            await self.transport.close()

    async def _deliver_until(self, stop: asyncio.Event) -> None:
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

    async def _wait(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
