"""/admin/users: Users and API keys (administrators only)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/admin/users")
