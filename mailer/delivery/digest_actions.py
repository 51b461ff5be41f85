"""What an editor does with a digest, once for every surface: define, change and delete
it, preview it (saved or as a draft), test-send it and send it now.

The editors' API, the admin pages and the CLI parse their input into the schemas, call
these, and present the result or the `mailer.errors` refusal raised here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import anyio.to_thread
from sqlalchemy import Engine
from sqlmodel import Session

from mailer.clock import Clock
from mailer.config import Settings
from mailer.content import digests
from mailer.content.articles import normalize_topics
from mailer.db import session_scope
from mailer.delivery import sends
from mailer.delivery.dkim import DkimSigner
from mailer.delivery.render import MailRenderer, RenderedMail
from mailer.errors import Conflict
from mailer.models import Article, Digest, Send
from mailer.schemas import DigestCreate, DigestUpdate, TestSend
from mailer.subscriptions.addresses import normalize_email


class DigestTools(Protocol):
    """What these actions use from the process they run in."""

    @property
    def settings(self) -> Settings: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def renderer(self) -> MailRenderer: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def msgid_domain(self) -> str: ...

    @property
    def dkim_signer(self) -> DkimSigner | None: ...

    def notify_sender(self) -> None: ...


class NothingToPreview(Conflict):
    """The digest has no new article to show; `reason` says so without the preamble."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"nothing to preview: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class DigestPreview:
    """The digest as it would go out now, for a sample reader, and the articles it carries."""

    mail: RenderedMail
    articles: list[Article]


@dataclass(frozen=True)
class TestSent:
    """Who a test-send reached, and the relay's reply for each address it did not."""

    sent: list[str]
    failed: dict[str, str]


def define(session: Session, tools: DigestTools, body: DigestCreate) -> Digest:
    """A new digest, scheduled; Invalid for a bad schedule, zone, template or list, Conflict
    for a taken name. Its templates are tried first, before any write."""
    fields = digests.check(body.model_dump(exclude={"list_slug"}), tools.renderer)
    now = tools.clock.now()
    digest = digests.create(session, body.list_slug, fields, now)
    digests.reschedule(digest, now)
    session.add(digest)
    return digest


def update(session: Session, tools: DigestTools, digest_id: int, body: DigestUpdate) -> Digest:
    """Change the fields `body` sets; null clears send_at (a one-off time) and leaves any
    other field as it is."""
    fields = {
        name: value
        for name, value in body.model_dump(exclude_unset=True).items()
        if value is not None or name == "send_at"
    }
    digests.check(fields, tools.renderer)  # first: no transaction while templates try out
    digest = digests.get(session, digest_id)
    now = tools.clock.now()
    digests.apply(session, digest, fields, now)
    digests.reschedule(digest, now)
    session.add(digest)
    return digest


def delete(session: Session, digest_id: int) -> None:
    """Delete a digest that never sent (Conflict otherwise: disable it instead)."""
    digests.delete(session, digests.get(session, digest_id))


def preview(session: Session, tools: DigestTools, digest: Digest) -> DigestPreview:
    """`digest` (saved or a draft) as it would go out now; writes nothing. Invalid for a
    template that does not render, NothingToPreview without new articles."""
    try:
        mail, articles = sends.preview(
            session, tools.settings, tools.renderer, digest, tools.clock.now()
        )
    except sends.NothingNew as exc:
        raise NothingToPreview(exc.message) from exc
    return DigestPreview(mail=mail, articles=articles)


def preview_draft(
    session: Session, tools: DigestTools, digest_id: int, draft: DigestUpdate
) -> DigestPreview:
    """The saved digest with the draft's name, topics, size and templates, unsaved."""
    saved = digests.get(session, digest_id)
    copy = Digest.model_validate(saved.model_dump())
    changes = draft.model_dump(exclude_unset=True, exclude_none=True)
    copy.name = str(changes.get("name", "")).strip() or saved.name
    copy.topics = normalize_topics(changes.get("topics", saved.topics))
    copy.max_articles = changes.get("max_articles", saved.max_articles)
    for part in ("subject", "html", "text"):
        name = f"{part}_template"
        setattr(copy, name, changes.get(name, getattr(saved, name)))
    return preview(session, tools, copy)


async def test_send(tools: DigestTools, digest_id: int, request: TestSend) -> TestSent:
    """Send the preview, subject marked [TEST], to the given addresses only (DKIM-signed
    like the real thing); Invalid for a bad address, before anything renders."""
    addresses = [normalize_email(address) for address in request.addresses]

    def render() -> RenderedMail:
        with session_scope(tools.engine) as session:
            return preview(session, tools, digests.get(session, digest_id)).mail

    mail = await anyio.to_thread.run_sync(render)
    sent, failed = await sends.send_test(
        tools.settings,
        tools.msgid_domain,
        mail,
        addresses,
        tools.clock.now(),
        dkim_signer=tools.dkim_signer,
    )
    return TestSent(sent=sent, failed=failed)


def send_now(session: Session, tools: DigestTools, digest_id: int) -> tuple[Send, sends.Progress]:
    """Start a send of the digest now, committed, and wake the sender. With nothing new it
    ends `skipped` with the reason; AlreadyStarted when a send of this moment exists. The
    send and its counts are read as it started, before the sender is woken."""
    digest = digests.get(session, digest_id)
    now = tools.clock.now()
    send = sends.start_send(
        session, tools.settings, tools.renderer, digest, scheduled_for=now, now=now
    )
    session.commit()
    assert send.id is not None
    started = sends.progress(session, send.id)
    tools.notify_sender()
    return started
