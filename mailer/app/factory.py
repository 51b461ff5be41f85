"""The app factory: one FastAPI app from Services, with the sender and scheduler attached:
the editors' API, the readers' endpoints and the web pages, under one set of middleware."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, FastAPI, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.cors import CORSMiddleware

from mailer import __version__
from mailer.api import errors, health, webhooks_in
from mailer.api.editors import (
    articles,
    bounces,
    digests,
    feeds,
    forms,
    lists,
    sends,
    subscribers,
    webhooks,
)
from mailer.api.keyfirst import EditorsFirst
from mailer.http import refusals, responses
from mailer.http.bodylimits import BodyLimits
from mailer.http.deps import SESSION_COOKIE, row_ids_in_range, signed_in_browser
from mailer.jobs import make_scheduler
from mailer.services import Services
from mailer.web import admin, archive, links, signup
from mailer.web.admin import errors as admin_errors
from mailer.web.headers import SecurityHeaders
from mailer.web.pages import STATIC, Pages
from mailer.web.refusals import reader_refusal

log = logging.getLogger(__name__)


def create_app(
    services: Services, *, run_sender: bool = True, run_scheduler: bool = True
) -> FastAPI:
    """The HTTP app. With `run_sender` the outbox and the webhooks are delivered in this
    process too."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        scheduler = make_scheduler(services) if run_scheduler else None
        _app.state.scheduler = scheduler
        if scheduler is not None:
            scheduler.start()
        loops = (
            [asyncio.create_task(loop) for loop in services.delivery_loops(stop)]
            if run_sender
            else []
        )
        try:
            yield
        finally:
            stop.set()
            for task in loops:
                await task
            if scheduler is not None:
                scheduler.shutdown(wait=False)

    app = FastAPI(
        title="mailer",
        version=__version__,
        description="Newsletter signup, consent and delivery. Editors' API under /api/v1/.",
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.pages = Pages(services.settings.mail.site_name, services.settings.theme)
    # Innermost first: bodies are bounded before any route reads them, and the editors'
    # API decides who calls before the body is read at all.
    app.add_middleware(
        BodyLimits,
        settings=services.settings.http,
        signed_in=lambda request: signed_in_browser(request, services) is not None,
    )
    app.add_middleware(EditorsFirst, services=services)
    # Signup forms are embedded on other sites: any origin may post, never with cookies.
    # Authorization is not an allowed header, so browsers cannot call the editors' API
    # cross-origin.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_credentials=False,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type"],
    )
    app.add_middleware(SecurityHeaders)
    refusals.install(
        app,
        {
            refusals.API: errors.json_refusal,
            refusals.ADMIN_PAGES: admin_errors.admin_refusal,
            refusals.READERS: reader_refusal,
        },
        owners={"mailer.web": refusals.READERS, "mailer.web.admin": refusals.ADMIN_PAGES},
        editor_cookie=SESSION_COOKIE,
    )
    admin_errors.install(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(webhooks_in.make_router(services))
    app.include_router(_site())

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        """No icon: an empty answer rather than a 404 in every browser's console."""
        return Response(status_code=204, headers={"Cache-Control": "max-age=86400"})

    return app


@functools.cache
def _site() -> APIRouter:
    """Every route that does not depend on the process's collaborators, assembled once per
    process (FastAPI builds each included route's models when it is included)."""
    site = APIRouter()
    for readers in (signup, links, archive):
        site.include_router(readers.router)
    site.include_router(health.router)
    site.include_router(admin.router)
    api = APIRouter(
        prefix="/api/v1",
        responses=responses.EDITORS,
        dependencies=[Depends(row_ids_in_range)],
    )
    for module in (lists, forms, subscribers, articles, feeds, digests, sends, webhooks, bounces):
        api.include_router(module.router)
    site.include_router(api)
    return site
