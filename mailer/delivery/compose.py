"""Turns an outbox row into the message for its recipient: confirmations and digests."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from html import escape

from sqlmodel import Session, col, select

from mailer import mailboxes
from mailer.config import Settings
from mailer.delivery import message
from mailer.delivery.dkim import DkimSigner
from mailer.delivery.render import RECIPIENT, MailRenderer, RenderedMail, fill, recipient_values
from mailer.delivery.template_values import articles_values, list_values
from mailer.models import (
    Article,
    Confirmation,
    MailingList,
    OutboxKind,
    OutboxMessage,
    Send,
    SendVariant,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)
from mailer.subscriptions import suppression
from mailer.tokens import Purpose, Signer


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipient: str
    data: bytes


def personalize(mail: RenderedMail | Send | SendVariant, values: dict[str, str]) -> RenderedMail:
    """One recipient's copy: markers filled, escaped in the HTML part."""
    return RenderedMail(
        subject=fill(mail.subject, values),
        text=fill(mail.text, values),
        html=fill(mail.html, escaped(values)),
    )


def escaped(values: dict[str, str]) -> dict[str, str]:
    """The values as they go into HTML."""
    return {key: escape(value) for key, value in values.items()}


class NothingToSend(Exception):
    """The row no longer leads to a message (erased reader, revoked confirmation)."""


class Composer:
    def __init__(self, settings: Settings, renderer: MailRenderer, signer: Signer) -> None:
        self.settings = settings
        self.renderer = renderer
        self.signer = signer
        self._sends: dict[int, tuple[Send, MailingList]] = {}
        self._variants: dict[int, SendVariant] = {}
        self._subscriptions: dict[tuple[int, int], Subscription] = {}
        self._suppressed: set[int] = set()
        self._prepared_bodies: dict[tuple[str, int | None], message.PreparedBody] = {}
        self._subscribers: dict[int | None, Subscriber] = {}
        self.msgid_domain = mailboxes.sender_domain(settings)
        self.unsubscribe_mailbox = mailboxes.unsubscribe_mailbox(settings)
        self._bounce_local, _, self._bounce_domain = mailboxes.bounce_mailbox(settings).rpartition(
            "@"
        )
        self.dkim = DkimSigner.from_settings(settings.dkim)
        """Signs every message when [dkim] is set; its keys are read (and checked) here."""
        self._bulk = message.BulkMessageMaker(
            settings.mail.from_name,
            settings.mail.from_address,
            self.msgid_domain,
            {"Precedence": "bulk"},
        )

    def prefetch(self, session: Session, rows: list[OutboxMessage]) -> None:
        """Load a batch's subscribers, their list subscriptions and which of them are
        suppressed in three queries, not per row."""
        subscriber_ids = {row.subscriber_id for row in rows}
        # Held here: the session's identity map keeps only weak references.
        self._subscribers = {
            subscriber.id: subscriber
            for subscriber in session.exec(
                select(Subscriber).where(col(Subscriber.id).in_(subscriber_ids))
            )
        }
        self._suppressed = suppression.suppressed_ids(session, self._subscribers.values())
        self._subscriptions = {
            (sub.subscriber_id, sub.list_id): sub
            for sub in session.exec(
                select(Subscription).where(col(Subscription.subscriber_id).in_(subscriber_ids))
            )
        }

    def compose(self, session: Session, row: OutboxMessage, now: datetime) -> Envelope:
        """The message for the row's recipient, from a bounce address naming the row."""
        if row.subscriber_id in self._suppressed:
            raise NothingToSend("address suppressed")
        if row.kind == OutboxKind.confirmation:
            envelope = self._confirmation(session, row, now)
        elif row.kind == OutboxKind.digest:
            envelope = self._digest(session, row, now)
        elif row.kind == OutboxKind.welcome:
            envelope = self._welcome(session, row, now)
        else:
            raise NothingToSend(f"unknown kind {row.kind}")
        assert row.id is not None
        return replace(envelope, sender=self.return_path(row.id), data=self.sign(envelope.data))

    def sign(self, data: bytes) -> bytes:
        """The final bytes with their DKIM signature(s) first, or as they are without a key."""
        return self.dkim.sign(data) if self.dkim is not None else data

    def return_path(self, outbox_id: int) -> str:
        """The VERP envelope sender for one message: <local>+<signed tag>@<domain>."""
        return (
            f"{self._bounce_local}+{self.signer.return_path_tag(outbox_id)}@{self._bounce_domain}"
        )

    def _send_parts(self, session: Session, send_id: int) -> tuple[Send, MailingList]:
        cached = self._sends.get(send_id)
        if cached is None:
            send = session.get(Send, send_id)
            mailing_list = session.get(MailingList, send.list_id) if send else None
            if send is None or mailing_list is None:
                raise NothingToSend("the send is gone")
            if len(self._sends) > 64:
                self._sends.clear()
            cached = self._sends[send_id] = (send, mailing_list)
        return cached

    def _digest(self, session: Session, row: OutboxMessage, now: datetime) -> Envelope:
        assert row.send_id is not None
        send, mailing_list = self._send_parts(session, row.send_id)
        # Checked now, not when the send started: a reader who left meanwhile gets nothing.
        subscriber = self._still_subscribed(session, row.subscriber_id, send.list_id)
        values, headers = self._list_parts(subscriber, mailing_list, f"{send.id}", "digest")
        body: Send | SendVariant = send
        if row.variant_id is not None:
            body = self._variant(session, row.variant_id)
        subject = fill(body.subject, values)
        if not self._bulk.takes(subscriber.email, subject):
            return self._bulk_envelope(subscriber, personalize(body, values), headers, now)
        data = self._bulk.build_prepared(
            subscriber.email, subject, self._prepared(body), values, escaped(values), now, headers
        )
        return Envelope(self.settings.mail.from_address, subscriber.email, data)

    def _prepared(self, body: Send | SendVariant) -> message.PreparedBody:
        """The body encoded once per send (or rendering of it), kept for its recipients."""
        key = (type(body).__name__, body.id)
        prepared = self._prepared_bodies.get(key)
        if prepared is None:
            if len(self._prepared_bodies) > 256:
                self._prepared_bodies.clear()
            mail = RenderedMail(subject=body.subject, text=body.text, html=body.html)
            prepared = self._prepared_bodies[key] = self._bulk.prepare(mail)
        return prepared

    def _variant(self, session: Session, variant_id: int) -> SendVariant:
        cached = self._variants.get(variant_id)
        if cached is None:
            cached = session.get(SendVariant, variant_id)
            if cached is None:
                raise NothingToSend("the send's rendering is gone")
            if len(self._variants) > 256:
                self._variants.clear()
            self._variants[variant_id] = cached
        return cached

    def _welcome(self, session: Session, row: OutboxMessage, now: datetime) -> Envelope:
        mailing_list = session.get(MailingList, row.list_id)
        if mailing_list is None:
            raise NothingToSend("the list is gone")
        subscriber = self._still_subscribed(session, row.subscriber_id, mailing_list.id or 0)
        values, headers = self._list_parts(subscriber, mailing_list, "welcome", "welcome")
        articles = (
            list(
                session.exec(
                    select(Article)
                    .order_by(col(Article.published_at).desc())
                    .limit(mailing_list.welcome_articles)
                )
            )
            if mailing_list.welcome_articles
            else []
        )
        mail = self.renderer.render(
            "welcome",
            list=list_values(mailing_list),
            articles=articles_values(articles),
            recipient=RECIPIENT,
            site_name=self.settings.mail.site_name,
            postal_address=self.settings.mail.postal_address,
        )
        return self._bulk_envelope(subscriber, personalize(mail, values), headers, now)

    def _still_subscribed(self, session: Session, subscriber_id: int, list_id: int) -> Subscriber:
        """The subscriber, if still confirmed on the list now (not when the mail was queued)."""
        subscriber = self._subscribers.get(subscriber_id) or session.get(Subscriber, subscriber_id)
        subscription = self._subscriptions.get((subscriber_id, list_id))
        if subscription is None:
            subscription = session.exec(
                select(Subscription).where(
                    col(Subscription.subscriber_id) == subscriber_id,
                    col(Subscription.list_id) == list_id,
                )
            ).first()
        if subscriber is None or subscriber.erased_at is not None:
            raise NothingToSend("subscriber erased")
        if subscription is None or subscription.status != SubscriptionStatus.confirmed:
            raise NothingToSend("no longer subscribed")
        return subscriber

    def _list_parts(
        self, subscriber: Subscriber, mailing_list: MailingList, campaign: str, kind: str
    ) -> tuple[dict[str, str], list[tuple[str, list[str]]]]:
        """The recipient's values for the markers, the List-* headers and Feedback-ID
        (campaign:list:kind:sender, Gmail's format; nothing personal in it)."""
        token = self.signer.sign(Purpose.unsubscribe, {"s": subscriber.id, "l": mailing_list.id})
        unsubscribe_url = f"{self.settings.public_url}/unsubscribe/{token}"
        values = recipient_values(unsubscribe_url, subscriber.name, subscriber.email)
        mailto = f"mailto:{self.unsubscribe_mailbox}?subject=unsubscribe%20{token}"
        headers = [
            ("List-Id", [f"<{mailing_list.slug}.{self.msgid_domain}>"]),
            ("List-Unsubscribe", [f"<{unsubscribe_url}>", f"<{mailto}>"]),
            ("List-Unsubscribe-Post", ["List-Unsubscribe=One-Click"]),
            ("Feedback-ID", [f"{campaign}:{mailing_list.slug}:{kind}:{self.msgid_domain}"]),
        ]
        return values, headers

    def _bulk_envelope(
        self,
        subscriber: Subscriber,
        mail: RenderedMail,
        headers: list[tuple[str, list[str]]],
        now: datetime,
    ) -> Envelope:
        data = self._bulk.build(subscriber.email, mail, now, headers)
        return Envelope(self.settings.mail.from_address, subscriber.email, data)

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
            extra["Reply-To"] = message.header_address(self.settings.mail.reply_to)
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
