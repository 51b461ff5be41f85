"""/admin/bounces: what receivers reported about the mail, newest first, by kind.

Policy refusals are the operator's alerts (the sender's setup needs attention), so they
stand out; each event links to its subscriber's page when it is tied to one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from mailer.bounces import history
from mailer.http.deps import ServicesDep, SessionDep
from mailer.models import BounceKind
from mailer.web.admin.common import SignedInDep, render
from mailer.web.admin.times import time_tag

router = APIRouter(prefix="/admin/bounces")

SHOWN = 200
KINDS = [kind.value for kind in BounceKind]


@router.get("")
def list_page(
    request: Request,
    current: SignedInDep,
    services: ServicesDep,
    session: SessionDep,
    kind: Annotated[BounceKind | None, Query(description="Only this kind")] = None,
) -> Response:
    """The latest events (all kinds, or one), with what each kind does to the reader."""
    found = history.recent(session, kind=kind, limit=SHOWN)
    return render(
        request,
        current,
        "admin/bounces.html",
        section="bounces",
        events=found,
        kind=kind.value if kind is not None else "",
        kinds=KINDS,
        shown=SHOWN,
        limits=services.settings.bounces,
        time_tag=time_tag,
    )
