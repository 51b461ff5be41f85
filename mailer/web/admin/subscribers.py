"""/admin/subscribers: Subscribers: search, status per list, consent timeline, export, erase."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/admin/subscribers")
