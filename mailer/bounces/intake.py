"""Taking in one inbound email, by SMTP (the listener) or from the bounce mailbox: read
its reports and handle all of them in one transaction. Mail to the List-Unsubscribe
mailbox, when it comes the same way, unsubscribes the reader its token names."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesHeaderParser

from sqlalchemy import Engine

from mailer import mailboxes
from mailer.bounces import reports
from mailer.bounces.handling import Outcome, handle
from mailer.clock import Clock
from mailer.config import BounceSettings, Settings
from mailer.db import session_scope
from mailer.subscriptions.mail_unsubscribe import unsubscribe_by_mail
from mailer.tokens import Signer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Handled:
    reading: reports.Reading
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def label(self) -> str:
        """How the message is counted: acted-on, or why not (its kind, or ignored)."""
        if any(outcome.kind is not None for outcome in self.outcomes):
            return "acted-on"
        if self.reading.reports:
            return "ignored"
        return self.reading.kind.value


class Intake:
    """Reads inbound reports and acts on them; counts what it saw by `Handled.label`."""

    def __init__(
        self,
        engine: Engine,
        signer: Signer,
        settings: BounceSettings,
        clock: Clock,
        unsubscribe_address: str = "",
    ) -> None:
        self.engine = engine
        self.signer = signer
        self.settings = settings
        self.clock = clock
        self.unsubscribe_address = unsubscribe_address.lower()
        """The List-Unsubscribe mailbox (mailboxes.unsubscribe_mailbox); "" when mail to
        it does not come this way."""
        self.counts: Counter[str] = Counter()

    @classmethod
    def for_settings(
        cls, settings: Settings, engine: Engine, signer: Signer, clock: Clock
    ) -> Intake:
        """The intake as the settings have it, mail to the List-Unsubscribe mailbox
        included."""
        return cls(engine, signer, settings.bounces, clock, mailboxes.unsubscribe_mailbox(settings))

    def take(self, data: bytes, envelope_recipients: Sequence[str] = ()) -> Handled:
        """Read one email and handle its reports; returns once they are committed (a
        database error propagates, so the caller keeps the email to try again)."""
        if self._to_unsubscribe_mailbox(data, envelope_recipients):
            return self._unsubscribe(data)
        reading = reports.read(data, self.signer, envelope_recipients)
        if not reading.reports:
            handled = Handled(reading)
            log.debug("inbound %s mail not acted on: %s", reading.kind.value, reading.reason)
        else:
            now = self.clock.now()
            with session_scope(self.engine) as session:
                outcomes = [
                    handle(session, report, self.settings, now) for report in reading.reports
                ]
            handled = Handled(reading, outcomes)
            for report, outcome in zip(reading.reports, outcomes, strict=True):
                log.info(
                    "inbound %s about outbox row %s: %s%s",
                    reading.kind.value,
                    report.outbox_id,
                    outcome.kind.value if outcome.kind else f"ignored ({outcome.reason})",
                    " (suppressed)" if outcome.suppressed else "",
                    extra={"outbox_id": report.outbox_id, "subscriber_id": outcome.subscriber_id},
                )
        self.counts[handled.label] += 1
        return handled

    def _to_unsubscribe_mailbox(self, data: bytes, envelope_recipients: Sequence[str]) -> bool:
        if not self.unsubscribe_address:
            return False
        recipients = list(envelope_recipients)
        if not recipients:  # from the mailbox: the delivery headers say where it went
            headers = BytesHeaderParser(policy=policy.compat32).parsebytes(data)
            recipients = [
                str(value)
                for name in reports.DELIVERY_HEADERS
                for value in headers.get_all(name, [])
            ]
        return any(self.unsubscribe_address in address.lower() for address in recipients)

    def _unsubscribe(self, data: bytes) -> Handled:
        with session_scope(self.engine) as session:
            left = unsubscribe_by_mail(session, data, self.signer, self.clock.now())
        label = "unsubscribed" if left else "unsubscribe-ignored"
        log.info("inbound mail to the unsubscribe mailbox: %s", label)
        self.counts[label] += 1
        return Handled(reports.Reading(reports.InboundKind.unsubscribe, [], label))
