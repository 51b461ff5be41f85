"""The collaborators one mailer process needs, built once from Settings."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from mailer import config, db, personal_data
from mailer.bounces import handling
from mailer.bounces.intake import Intake
from mailer.bounces.mailbox import MailboxPoller
from mailer.clock import Clock, SystemClock
from mailer.delivery.compose import Composer
from mailer.delivery.dkim import DkimSigner
from mailer.delivery.refusals import Refusal, RefusalHandler
from mailer.delivery.render import MailRenderer
from mailer.delivery.render_limits import TemplateLimits
from mailer.delivery.sender import Sender
from mailer.delivery.transport import Transport, make_transport
from mailer.metrics import Metrics
from mailer.outbound import AddressPolicy, Outbound, Resolver, system_resolver, tls_context
from mailer.ratelimit import SlidingWindowLimiter
from mailer.signin_throttle import SignInThrottle
from mailer.tokens import Signer
from mailer.webhooks.delivery import WebhookSender


@dataclass
class Services:
    settings: config.Settings
    engine: Engine
    signer: Signer
    clock: Clock
    metrics: Metrics
    renderer: MailRenderer
    transport: Transport
    sender: Sender
    outbound: Outbound
    """Every HTTP request to another server (feeds, webhooks, SNS) is made through it."""
    webhooks: WebhookSender
    ip_limiter: SlidingWindowLimiter
    address_limiter: SlidingWindowLimiter
    signin_throttle: SignInThrottle
    """Failed sign-ins to /admin/, per client IP, per client and account, per account."""

    def notify_sender(self) -> None:
        """Wake the sender: a send was started or resumed."""
        self.sender.notify()

    @property
    def msgid_domain(self) -> str:
        """The domain of the Message-IDs this server's mail carries."""
        return self.sender.composer.msgid_domain

    @property
    def dkim_signer(self) -> DkimSigner | None:
        """The DKIM signer of this server's mail, when one is set up."""
        return self.sender.composer.dkim

    def delivery_loops(self, stop: asyncio.Event) -> list[Coroutine[Any, Any, None]]:
        """What a process that delivers runs until `stop` (`mailer worker`, and `mailer
        serve` unless --no-worker): the sender, the webhook sender, and the bounce mailbox
        poller when one is set."""
        loops = [self.sender.run_forever(stop), self.webhooks.run_forever(stop)]
        bounces = self.settings.bounces
        if bounces.imap_host:
            intake = Intake.for_settings(self.settings, self.engine, self.signer, self.clock)
            loops.append(MailboxPoller(intake, bounces).run_forever(stop))
        return loops


def bounce_on_refusal(settings: config.BounceSettings) -> RefusalHandler:
    """The sender's handler of final SMTP refusals: each is a bounce report from source
    "smtp", handled in the sender's transaction (a dead address is suppressed)."""

    def on_refusal(session: Session, refusal: Refusal, now: datetime) -> handling.Outcome:
        report = handling.Report(
            source="smtp",
            status=refusal.status,
            action=refusal.action,
            detail=refusal.detail,
            outbox_id=refusal.outbox_id,
        )
        return handling.handle(session, report, settings, now)

    return on_refusal


def build(
    settings: config.Settings,
    *,
    clock: Clock | None = None,
    transport: Transport | None = None,
    resolver: Resolver | None = None,
) -> Services:
    """Wire everything from settings; `clock`, `transport` and the host name `resolver` of
    outbound requests may be swapped (tests)."""
    config.check_production(settings)
    personal_data.close_data_to_others(settings)
    clock = clock or SystemClock()
    engine = db.make_engine(settings)
    signer = Signer(config.signing_key(settings))
    metrics = Metrics()
    renderer = MailRenderer(
        settings.email_template_dirs,
        TemplateLimits(
            settings.templates.render_timeout_seconds, settings.templates.max_output_bytes
        ),
    )
    transport = transport or make_transport(settings.smtp, settings.maildir_path)
    composer = Composer(settings, renderer, signer)
    sender = Sender(
        engine,
        transport,
        composer,
        settings.sender,
        clock,
        metrics,
        bounce_on_refusal(settings.bounces),
    )
    signup = settings.signup
    outbound = Outbound(AddressPolicy.from_settings(settings.network), resolver or system_resolver)
    return Services(
        settings=settings,
        engine=engine,
        signer=signer,
        clock=clock,
        metrics=metrics,
        renderer=renderer,
        transport=transport,
        sender=sender,
        outbound=outbound,
        webhooks=WebhookSender(
            engine, settings.webhooks, clock, outbound, tls_context(settings.webhooks.ca_file)
        ),
        ip_limiter=SlidingWindowLimiter(
            signup.rate_limit_per_ip, signup.rate_limit_per_ip_window_seconds
        ),
        address_limiter=SlidingWindowLimiter(
            signup.rate_limit_per_address, signup.rate_limit_per_address_window_seconds
        ),
        signin_throttle=SignInThrottle(settings.admin),
    )
