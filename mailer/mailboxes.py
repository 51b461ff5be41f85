"""Our own addresses, derived in one place from the settings: the domain of Message-IDs,
the VERP bounce mailbox and the List-Unsubscribe mailbox. The composer writes them into
mail; the inbound listener and the mailbox poller recognise them when mail comes back."""

from __future__ import annotations

from urllib.parse import urlsplit

from mailer.config import Settings
from mailer.subscriptions.addresses import ascii_domain


def sender_domain(settings: Settings) -> str:
    """The From address's domain, else the public URL's host; in IDNA (ASCII) form, as it
    goes into Message-IDs and envelope addresses."""
    return ascii_domain(
        settings.mail.from_address.rpartition("@")[2]
        or urlsplit(settings.public_url).hostname
        or "localhost"
    )


def bounce_mailbox(settings: Settings) -> str:
    """The envelope sender a message's VERP address is made from: bounces@<domain>."""
    return settings.mail.bounce_mailbox or f"bounces@{sender_domain(settings)}"


def unsubscribe_mailbox(settings: Settings) -> str:
    """The mailto: address of List-Unsubscribe: unsubscribe@<domain>."""
    return settings.mail.unsubscribe_mailbox or f"unsubscribe@{sender_domain(settings)}"
