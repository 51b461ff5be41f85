"""What the sender tells of a receiver's final SMTP refusal, and what it needs to hear back.

The delivery package declares this; whoever builds the sender (`mailer.services`) passes
a handler, which treats the refusal as a bounce. Delivery knows nothing of bounces.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlmodel import Session

from mailer.models import BounceKind


@dataclass(frozen=True)
class Refusal:
    """A receiver's final refusal of one message (a 5xx, or a 4xx retried no more)."""

    status: str
    """RFC 3463 enhanced status, e.g. "5.1.1"; "" when the reply has none."""
    action: str
    """"failed" for a permanent refusal, "delayed" for a temporary one given up on."""
    detail: str
    """The receiver's reply."""
    outbox_id: int


class RefusalOutcome(Protocol):
    """What became of a refusal: its kind (None: not counted) and whether the address
    was suppressed."""

    @property
    def kind(self) -> BounceKind | None: ...

    @property
    def suppressed(self) -> bool: ...


class RefusalHandler(Protocol):
    """Acts on a refusal in the sender's transaction (`session`), which records the batch."""

    def __call__(self, session: Session, refusal: Refusal, now: datetime) -> RefusalOutcome: ...
