"""/admin/sends: every send with its progress; one send's live progress (its script polls
`GET /api/v1/sends/{id}`), pausing, resuming and cancelling it, and its failed messages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response

from mailer.delivery import send_control, sends
from mailer.http.deps import ServicesDep, SessionDep
from mailer.models import Digest, OutboxStatus
from mailer.web.admin.common import PostedDep, SignedInDep, redirect, render

router = APIRouter(prefix="/admin/sends")

PAGE_SIZE = 50
FAILED_SHOWN = 50
DONE = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}


def rate_text(per_second: float | None) -> str:
    """A rate as editors read it: "12 msg/s", "0.25 msg/s"; "—" when unknown."""
    if per_second is None:
        return "—"
    digits = 2 if per_second < 1 else 1 if per_second < 10 else 0
    return f"{per_second:.{digits}f} msg/s"


def eta_text(seconds: float | None) -> str:
    """An ETA as editors read it: "about 3 min"; "" when unknown."""
    if seconds is None:
        return ""
    if seconds < 1:
        return "done" if seconds == 0 else "under a second"
    if seconds < 90:
        return f"about {round(seconds)} s"
    if seconds < 90 * 60:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


@router.get("")
def list_page(
    request: Request,
    current: SignedInDep,
    session: SessionDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    rows = sends.recent(session, (page - 1) * PAGE_SIZE, PAGE_SIZE + 1)
    return render(
        request,
        current,
        "admin/sends.html",
        section="sends",
        rows=rows[:PAGE_SIZE],
        page=page,
        more=len(rows) > PAGE_SIZE,
    )


@router.get("/{send_id}")
def send_page(
    send_id: int,
    request: Request,
    current: SignedInDep,
    session: SessionDep,
    services: ServicesDep,
) -> Response:
    send, counts = sends.progress(session, send_id)
    now = services.clock.now()
    per_second = sends.rate(send, counts, now)
    digest = session.get(Digest, send.digest_id) if send.digest_id is not None else None
    return render(
        request,
        current,
        "admin/send.html",
        section="sends",
        send=send,
        counts=counts,
        digest=digest,
        rate=rate_text(per_second),
        eta=eta_text(sends.eta_seconds(counts, per_second)),
        finished=counts.status in sends.FINISHED,
        failed_messages=sends.messages(session, send_id, OutboxStatus.failed, 0, FAILED_SHOWN),
    )


@router.post("/{send_id}/{change}")
def change_send(
    send_id: int,
    change: send_control.Change,
    _current: PostedDep,
    session: SessionDep,
    services: ServicesDep,
) -> Response:
    """Pause, resume or cancel the send, as the API does; 409 when its state forbids it."""
    try:
        send_control.change(session, send_id, change, services.clock.now(), services.notify_sender)
    except sends.WrongState as exc:
        raise HTTPException(409, f"This send cannot be changed now: {exc}.") from exc
    return redirect(f"/admin/sends/{send_id}", DONE[change])
