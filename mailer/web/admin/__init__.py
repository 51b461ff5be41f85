"""/admin/: the editors' web interface, one module per section of its menu."""

from __future__ import annotations

from fastapi import APIRouter

from mailer.web.admin import (
    articles,
    bounces,
    dashboard,
    digests,
    forms,
    sends,
    signin,
    subscribers,
    users,
    webhooks,
)

router = APIRouter(include_in_schema=False)
for section in (
    signin,
    dashboard,
    subscribers,
    articles,
    digests,
    sends,
    forms,
    webhooks,
    bounces,
    users,
):
    router.include_router(section.router)
