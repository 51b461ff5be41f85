"""The editors' API decides who is calling before it reads a byte of the request body:
a call without a good key (or signed-in session) is answered 401 from its headers alone,
so an anonymous client cannot make the server take in a large body."""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from mailer.api.deps import EDITOR_STATE, identify_editor
from mailer.http import unavailable
from mailer.services import Services

API = "/api/v1"


class EditorsFirst:
    """Pure ASGI middleware on /api/v1/: the caller, as `require_editor` decides it, is
    kept in the request's state for the route; a refusal is answered at once."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != API and not path.startswith(API + "/"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            editor = await run_in_threadpool(identify_editor, request, self.services)
        except HTTPException as exc:
            refusal = JSONResponse(
                {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
            )
            await refusal(scope, receive, send)
            return
        except Exception as exc:
            if not unavailable.is_outage(exc):
                raise
            # Outside the app's exception handlers: answered here as they would.
            await unavailable.answer(request, exc)(scope, receive, send)
            return
        scope.setdefault("state", {})[EDITOR_STATE] = editor
        await self.app(scope, receive, send)
