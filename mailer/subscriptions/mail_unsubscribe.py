"""Leaving by mail: the `mailto:` of List-Unsubscribe (RFC 2369).

A mail client that unsubscribes by mail sends to the unsubscribe mailbox with the subject
the header gave it, `unsubscribe <token>`; the signed token says who and which list. The
sender's address is not trusted (it may be forged or differ from the subscribed one):
only the token counts.
"""

from __future__ import annotations

import re
from datetime import datetime
from email import policy
from email.parser import BytesParser

from sqlmodel import Session

from mailer.errors import NotFound
from mailer.subscriptions import leaving, ledger
from mailer.tokens import Signer

TOKEN = re.compile(r"unsubscribe\s+([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)", re.IGNORECASE)


def token_in(raw: bytes) -> str | None:
    """The unsubscribe token in a message's subject (or, failing that, its first text
    part, for clients that put it there)."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    subject = str(message.get("Subject", ""))
    found = TOKEN.search(subject)
    if found is None:
        body = message.get_body(preferencelist=("plain",))
        if body is not None:
            found = TOKEN.search(str(body.get_content())[:4000])  # type: ignore[attr-defined]
    return found.group(1) if found else None


def unsubscribe_by_mail(session: Session, raw: bytes, signer: Signer, now: datetime) -> list[str]:
    """Unsubscribe the reader the message's token names from its list (all lists when the
    token names none); returns the slugs left, [] when the token is missing or bad."""
    token = token_in(raw)
    if token is None:
        return []
    try:
        subscriber_id, list_id = leaving.unsubscribe_target(signer, token)
    except NotFound:
        return []
    context = ledger.ConsentContext(form="mailto", consent_text="unsubscribed by mail")
    try:
        return leaving.unsubscribe(
            session, subscriber_id, {list_id} if list_id is not None else None, context, now
        )
    except NotFound:
        return []
