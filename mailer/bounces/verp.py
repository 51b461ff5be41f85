"""Reading the VERP bounce address a report came back to (made by
`Composer.return_path`: <local>+<signed tag>@<domain>) into the message it is about."""

from __future__ import annotations

from mailer import mailboxes
from mailer.config import Settings
from mailer.tokens import BadToken, Signer


def outbox_id_in(address: str, signer: Signer) -> int | None:
    """The outbox row a bounce address names, or None when it carries no valid signed tag
    (a forged or mangled address is ignored, never trusted)."""
    local = address.strip().strip("<>").rpartition("@")[0]
    _, plus, tag = local.rpartition("+")
    if not plus or not tag:
        return None
    try:
        return signer.read_return_path_tag(tag)
    except BadToken:
        return None


def bounce_domain(settings: Settings) -> str:
    """The domain of our VERP bounce addresses."""
    return mailboxes.bounce_mailbox(settings).rpartition("@")[2].lower()
