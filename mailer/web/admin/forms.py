"""/admin/forms: signup forms: consent wording (versioned), lists offered, thank-you
page, embed snippet."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/admin/forms")
