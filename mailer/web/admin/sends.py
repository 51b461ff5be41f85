"""/admin/sends: Sends: live progress, pause, resume, cancel."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/admin/sends")
