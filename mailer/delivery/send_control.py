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
) -> tuple[Send, sends.Progress]:
    """Pause, resume or cancel (`to`) the send and commit; NotFound for no such send,
    WrongState (a Conflict) when its state forbids the change. The send and its counts
    are read as the change left them, before the sender is woken to act on it."""
    sends.change(session, send_id, to, now)
    session.commit()
    changed = sends.progress(session, send_id)
    if to == "resume":
        notify_sender()
    return changed
