"""Turns an outbox row into the message for its recipient (confirmation mails for now)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlmodel import Session, col, select

from mailer.config import Settings
from mailer.delivery import message
from mailer.delivery.render import MailRenderer
from mailer.models import Confirmation, MailingList, OutboxKind, OutboxMessage, Subscriber
from mailer.tokens import Purpose, Signer


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipient: str
    data: bytes


class NothingToSend(Exception):
    """The row no longer leads to a message (erased reader, revoked confirmation)."""


class Composer:
    def __init__(self, settings: Settings, renderer: MailRenderer, signer: Signer) -> None:
        self.settings = settings
        self.renderer = renderer
        self.signer = signer
        self.msgid_domain = (
            settings.mail.from_address.rpartition("@")[2]
            or urlsplit(settings.public_url).hostname
            or "localhost"
        )

    def compose(self, session: Session, row: OutboxMessage, now: datetime) -> Envelope:
        if row.kind == OutboxKind.confirmation:
            return self._confirmation(session, row, now)
        raise NothingToSend(f"unknown kind {row.kind}")

    def _confirmation(self, session: Session, row: OutboxMessage, now: datetime) -> Envelope:
        subscriber = session.get(Subscriber, row.subscriber_id)
        confirmation = session.get(Confirmation, row.confirmation_id)
        if subscriber is None or subscriber.erased_at is not None or confirmation is None:
            raise NothingToSend("subscriber erased")
        if confirmation.revoked_at is not None or confirmation.used_at is not None:
            raise NothingToSend("confirmation no longer open")
        lists = list(
            session.scalars(
                select(MailingList)
                .where(col(MailingList.id).in_(confirmation.list_ids))
                .order_by(col(MailingList.name))
            )
        )
        token = self.signer.sign(Purpose.confirm, {"c": confirmation.id})
        mail = self.renderer.render(
            "confirm",
            site_name=self.settings.mail.site_name,
            list_names=[mailing_list.name for mailing_list in lists],
            confirm_url=f"{self.settings.public_url}/confirm/{token}",
            expires_at=confirmation.expires_at,
            postal_address=self.settings.mail.postal_address,
        )
        extra = {"Auto-Submitted": "auto-generated"}
        if self.settings.mail.reply_to:
            extra["Reply-To"] = self.settings.mail.reply_to
        data = message.build(
            from_name=self.settings.mail.from_name,
            from_address=self.settings.mail.from_address,
            to_address=subscriber.email,
            mail=mail,
            now=now,
            msgid_domain=self.msgid_domain,
            extra_headers=extra,
        )
        return Envelope(self.settings.mail.from_address, subscriber.email, data)
