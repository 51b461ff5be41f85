"""/admin/: the editors' web interface, one module per section of its menu."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from mailer.http.deps import row_ids_in_range
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

# An id in a path past 64 bits is a 404 before any query (the drivers fail on it).
router = APIRouter(include_in_schema=False, dependencies=[Depends(row_ids_in_range)])
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
