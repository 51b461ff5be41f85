"""/admin/: the editors' web interface, one module per section of its menu."""

from __future__ import annotations

from fastapi import APIRouter

from mailer.web.admin import (
    articles,
    dashboard,
    digests,
    forms,
    sends,
    signin,
    subscribers,
    users,
)

router = APIRouter(include_in_schema=False)
for section in (signin, dashboard, subscribers, articles, digests, sends, forms, users):
    router.include_router(section.router)
