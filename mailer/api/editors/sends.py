"""/api/v1/sends: a send's status and progress."""

from __future__ import annotations

from fastapi import APIRouter

from mailer.api.deps import EditorDep, SessionDep
from mailer.delivery import sends
from mailer.schemas import SendPublic

router = APIRouter(prefix="/sends", tags=["sends"])


@router.get("/{send_id}", response_model=SendPublic)
def get_send(send_id: int, session: SessionDep, _editor: EditorDep) -> SendPublic:
    """Status (queued, sending, paused, done, cancelled, skipped) and recipient counts."""
    send, counts = sends.progress(session, send_id)
    return SendPublic.model_validate(sends.public_fields(send, counts))
