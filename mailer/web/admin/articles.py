"""/admin/articles: articles (list, filter by topic, edit, delete) and feeds with their
last poll."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/admin/articles")
