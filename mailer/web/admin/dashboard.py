"""/admin/dashboard: subscribers per list over time, signups and unsubscribes per day,
the last and next sends."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from mailer.web.admin.common import SignedInDep, render

router = APIRouter(prefix="/admin/dashboard")


@router.get("")
def dashboard(request: Request, current: SignedInDep) -> Response:
    return render(request, current, "admin/dashboard.html", section="dashboard")
