"""The inbound SMTP listener (`mailer bounces serve`): accepts DSNs and ARF reports for
our bounce domain, and mail to the List-Unsubscribe mailbox, and hands each message to the
intake.

Mail for other domains is refused (550 5.1.2); mail for our domain is accepted whatever
its local part, so a forger learns nothing about which tags are valid; a message over
`max_message_bytes` is refused (552). A message is answered 250 only once its reports
are committed; a database failure answers 451 so the sending server tries again.
"""

from __future__ import annotations

import asyncio
import logging

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailer.bounces.intake import Intake

log = logging.getLogger(__name__)


class ReportHandler:
    """aiosmtpd's handler: the RCPT check and the DATA intake."""

    def __init__(self, intake: Intake, domain: str) -> None:
        self.intake = intake
        self.domain = domain.lower()

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        ours = address.rpartition("@")[2].lower() == self.domain
        if not ours and address.lower() != self.intake.unsubscribe_address:
            return "550 5.1.2 This server takes bounce reports for its own domain only"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not data:
            data = envelope.content
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.intake.take, data, list(envelope.rcpt_tos))
        except Exception as exc:  # the database: the sending server keeps the report and retries
            log.error("could not record an inbound report (%s); answered 451", type(exc).__name__)
            return "451 4.3.0 Temporary failure recording the report; try again later"
        return "250 OK: report received"


class BounceListener:
    """The SMTP server in a thread of its own: `start()`, then `stop()`."""

    def __init__(
        self, intake: Intake, domain: str, host: str, port: int, max_message_bytes: int
    ) -> None:
        self.handler = ReportHandler(intake, domain)
        self.host = host
        self.port = port
        self.domain = domain
        self.controller = Controller(
            self.handler,
            hostname=host,
            port=port,
            data_size_limit=max_message_bytes,
            ident="mailer bounce listener",
        )

    def start(self) -> None:
        """Listen (OSError when the port is taken or the address is not ours)."""
        # aiosmtpd logs every MAIL FROM and RCPT TO at info level: addresses stay out of it.
        smtp_log = logging.getLogger("mail.log")
        if smtp_log.level < logging.WARNING:
            smtp_log.setLevel(logging.WARNING)
        self.controller.start()
        log.info(
            "listening for bounce and complaint reports on %s:%s (mail for @%s)",
            self.host,
            self.port,
            self.domain,
        )

    def stop(self) -> None:
        self.controller.stop()
