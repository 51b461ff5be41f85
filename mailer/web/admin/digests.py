"""/admin/digests: create and edit with a cron builder, live preview, test-send, send
now."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/admin/digests")
