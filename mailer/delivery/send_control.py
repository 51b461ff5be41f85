"""What an editor does to a running send, once for every surface: pause, resume or cancel
it; the change is committed before the sender is woken (on resume) to act on it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal

from sqlmodel import Session

from mailer.delivery import sends
from mailer.models import Send

Change = Literal["pause", "resume", "cancel"]


def change(
    session: Session, send_id: int, to: Change, now: datetime, notify_sender: Callable[[], None]
) -> Send:
    """Pause, resume or cancel (`to`) the send and commit; NotFound for no such send,
    WrongState (a Conflict) when its state forbids the change."""
    send = sends.change(session, send_id, to, now)
    session.commit()
    if to == "resume":
        notify_sender()
    return send
