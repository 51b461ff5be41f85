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
from mailer.delivery.refusals import Refusal, RefusalHandler
from mailer.delivery.throttle import Throttle
from mailer.delivery.transport import DeliveryError, Transport
from mailer.logs import redact
from mailer.metrics import Metrics
from mailer.models import BounceKind, OutboxMessage, OutboxStatus

log = logging.getLogger(__name__)


@dataclass
class Batch:
    claimed: int
    """Rows claimed (including those closed because there was nothing to send)."""
    items: list[Claimed]
    send_ids: set[int]


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
        on_refusal: RefusalHandler,
    ) -> None:
        self.engine = engine
        self.on_refusal = on_refusal
        """Acts on a final refusal about the recipient (`mailer.services` makes it a bounce)."""
        self.transport = transport
        self.composer = composer
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        self.throttle = Throttle(settings)
        self.worker_id = workers.new_id()
        self.wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._held: set[int] = set()
        """Ids of the rows claimed and not yet recorded: their lease is renewed while this
        sender lives."""

    def notify(self) -> None:
        """Wake the loop early (callable from any thread): new mail was queued."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.wake.set)

    def _claim_and_compose(self) -> Batch:
        """Claim a batch and compose each message; rows with nothing to send are closed."""
        now = self.clock.now()
        lease = timedelta(seconds=self.settings.lease_seconds)
        with session_scope(self.engine) as session:
            ids = outbox.claim_due(session, now, self.settings.batch_size, lease)
        batch = Batch(len(ids), [], set())
        if not ids:
            return batch
        with session_scope(self.engine) as session:
            rows = list(session.exec(select(OutboxMessage).where(col(OutboxMessage.id).in_(ids))))
            self.composer.prefetch(session, rows)
            for row in rows:
                assert row.id is not None
                if row.send_id is not None:
                    batch.send_ids.add(row.send_id)
                try:
                    envelope = self.composer.compose(session, row, now)
                except NothingToSend as exc:
                    row.status = OutboxStatus.superseded
                    row.lease_until = None
                    row.last_reply = str(exc)
                    session.add(row)
                else:
                    batch.items.append(
                        Claimed(row.id, row.attempts, row.created_at, row.subscriber_id, envelope)
                    )
            sends.mark_sending(session, batch.send_ids, now)
        self._held.update(item.message_id for item in batch.items)
        return batch

    async def run_once(self) -> int:
        """Claim one batch of due messages and deliver it within the limits; returns how
        many rows were handled."""
        batch = await asyncio.to_thread(self._claim_and_compose)
        await self._deliver(batch)
        return batch.claimed

    async def _deliver(self, batch: Batch) -> None:
        """Deliver a claimed batch, then record its outcomes (before the next batch goes
        out, so that a crash repeats at most one batch)."""
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
            await asyncio.gather(*(deliver(item) for item in batch.items))
            if sent or failed or batch.send_ids:
                await asyncio.to_thread(self._record, sent, failed, batch.send_ids)
        finally:
            self._held.difference_update(item.message_id for item in batch.items)
        self.metrics.send_rate.set(self.throttle.observed_rate())

    def _record(
        self,
        sent: list[tuple[int, str]],
        failed: list[tuple[Claimed, DeliveryError]],
        send_ids: set[int],
    ) -> None:
        """Record a batch's outcomes in one transaction, handle the refusals that are about
        the recipient like bounces (a dead address is suppressed), then close finished
        sends."""
        now = self.clock.now()
        max_age = timedelta(hours=self.settings.max_age_hours)
        failures = []
        refusals: list[Refusal] = []
        for item, exc in failed:
            retry_at = None
            reply = exc.reply
            if not exc.permanent and item.attempt < self.settings.max_attempts:
                retry_at = now + outbox.retry_delay(item.attempt, self.settings.retry_base_seconds)
                if retry_at > item.created_at + max_age:
                    retry_at = None
                    reply = f"{reply} (given up: queued over {self.settings.max_age_hours:g} h ago)"
            # Only a final refusal counts as a bounce: with a new VERP sender per message,
            # greylisting defers every first try, and those deferrals say nothing about
            # the reader. Connection failures and slow-down answers are about the relay.
            if retry_at is None and exc.code is not None and not exc.asks_to_slow_down:
                refusals.append(
                    Refusal(
                        status=exc.enhanced_status,
                        action="failed" if exc.permanent else "delayed",
                        detail=exc.reply,
                        outbox_id=item.message_id,
                    )
                )
            failures.append(outbox.Failure(item.message_id, item.attempt, reply, retry_at))
            (self.metrics.mail_deferred if retry_at else self.metrics.mail_failed).inc()
            log.warning(
                "delivery of outbox row %s failed (%s): %s",
                item.message_id,
                "will retry" if retry_at else "final",
                redact(exc.reply),
                extra={
                    "outbox_id": item.message_id,
                    "smtp_code": exc.code,
                    "retry": bool(retry_at),
                },
            )
        suppressed = 0
        with session_scope(self.engine) as session:
            outbox.record_outcomes(session, sent, failures, now)
            for refusal in refusals:
                outcome = self.on_refusal(session, refusal, now)
                suppressed += outcome.suppressed
                if outcome.kind == BounceKind.policy:
                    self.metrics.policy_rejections.inc()
            sends.close_finished(session, send_ids, now)
        self.metrics.mail_sent.inc(len(sent))
        self.metrics.mail_suppressed.inc(suppressed)

    def heartbeat_once(self) -> None:
        """Heartbeat: count live senders (the limits are divided among them) and keep the
        lease on the batch in hand."""
        now = self.clock.now()
        stale = timedelta(seconds=3 * self.settings.heartbeat_seconds)
        with session_scope(self.engine) as session:
            live = workers.beat(session, self.worker_id, now, stale)
            held = sorted(self._held)
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
        """Deliver batch after batch; the next batch is claimed and composed (in a thread)
        while the current one is on the wire."""
        upcoming: asyncio.Future[Batch] | None = None
        try:
            while not stop.is_set():
                try:
                    batch = await (upcoming or asyncio.to_thread(self._claim_and_compose))
                    upcoming = None
                    if batch.claimed:
                        upcoming = asyncio.ensure_future(asyncio.to_thread(self._claim_and_compose))
                        await self._deliver(batch)
                        continue
                except Exception:
                    log.exception("sender loop error; retrying shortly")
                    if upcoming is not None and upcoming.done() and upcoming.exception():
                        upcoming = None  # the claim itself failed: claim afresh
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wait(stop), self.settings.poll_interval_seconds)
        finally:
            if upcoming is not None:  # claimed but not delivered: hand it back
                with contextlib.suppress(Exception):
                    unsent = await upcoming
                    await asyncio.to_thread(self._release, unsent)

    def _release(self, batch: Batch) -> None:
        ids = [item.message_id for item in batch.items]
        with session_scope(self.engine) as session:
            outbox.release(session, ids)
        self._held.difference_update(ids)

    async def _wait(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
