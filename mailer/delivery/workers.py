"""The registry of running senders: each records a heartbeat, and counts the live ones so
that the rate limits can be divided among them."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, func, update
from sqlmodel import Session, col, select

from mailer.models import Worker


def new_id() -> str:
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def beat(session: Session, worker_id: str, now: datetime, stale_after: timedelta) -> int:
    """Side effects: this sender's heartbeat recorded (registering it if needed), senders
    silent for `stale_after` forgotten. Returns how many senders are live, this one included."""
    updated = session.execute(
        update(Worker).where(col(Worker.id) == worker_id).values(heartbeat_at=now)
    )
    if not updated.rowcount:  # type: ignore[attr-defined]
        session.add(
            Worker(
                id=worker_id,
                host=socket.gethostname()[:255],
                pid=os.getpid(),
                started_at=now,
                heartbeat_at=now,
            )
        )
        session.flush()
    session.execute(delete(Worker).where(col(Worker.heartbeat_at) < now - stale_after))
    live = session.exec(select(func.count()).select_from(Worker)).one()
    return max(1, int(live))


def leave(session: Session, worker_id: str) -> None:
    """Side effect: this sender is no longer counted."""
    session.execute(delete(Worker).where(col(Worker.id) == worker_id))


def live(session: Session) -> list[Worker]:
    return list(session.exec(select(Worker).order_by(col(Worker.started_at))))
