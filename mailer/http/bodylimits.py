"""Every request body within bounds before any route reads it: a byte cap, checked
against Content-Length and again as the body arrives (never holding more than the cap),
413 past it; and for JSON bodies a nesting depth and number range (`boundedjson`), 400
outside them. A refused request reaches no route, so nothing is written."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailer import boundedjson
from mailer.config import HttpSettings
from mailer.errors import N_, MailerError, Malformed, TooLarge
from mailer.http import outage, refusals

EDITORS = ("/api/", "/admin/")
"""Paths of the editors' API and pages: a larger cap (digest templates are long)."""


class BodyLimits:
    """Pure ASGI middleware: reads the body up to the cap, checks it, and hands it on."""

    def __init__(
        self,
        app: ASGIApp,
        settings: HttpSettings,
        signed_in: Callable[[Request], bool] = lambda _request: False,
    ) -> None:
        self.app = app
        self.settings = settings
        self.signed_in = signed_in
        """Whether a request to /admin/ comes from a signed-in editor (it reads the
        database): only those get the editors' cap."""

    async def cap_for(self, request: Request, declared: int | None) -> int:
        """The editors' cap on /api/ (whose caller was checked before this runs) and for
        signed-in editors on /admin/; the readers' cap for everyone else, so an anonymous
        client cannot make the server take in an editor-sized body (at the sign-in, say)."""
        path = request.url.path
        readers = self.settings.max_body_bytes
        if not path.startswith(EDITORS) or (declared is not None and declared <= readers):
            return readers
        if path.startswith("/api/"):
            return self.settings.max_editor_body_bytes
        try:
            signed_in = await run_in_threadpool(self.signed_in, request)
        except Exception as exc:
            if not outage.is_outage(exc):
                raise
            signed_in = False  # the route answers the outage itself
        return self.settings.max_editor_body_bytes if signed_in else readers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        declared = request.headers.get("content-length")
        if declared is not None and not (declared.isascii() and declared.isdigit()):
            await _refuse(request, Malformed("", N_("bad Content-Length")), send)
            return
        cap = await self.cap_for(request, None if declared is None else int(declared))
        too_large = TooLarge.past(cap)
        if declared is not None and int(declared) > cap:
            await _refuse(request, too_large, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # nobody is left to answer
            body += message.get("body", b"")
            if len(body) > cap:
                await _refuse(request, too_large, send)
                return
            more = bool(message.get("more_body", False))
        if body and refusals.is_json(request.headers.get("content-type", "")):
            try:
                boundedjson.loads(bytes(body), self.settings.max_json_depth)
            except boundedjson.Refused as exc:
                await _refuse(request, exc, send)
                return
            except ValueError:
                pass  # malformed: the route says so in its own words
        await self.app(scope, _replay(bytes(body), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body read already, then whatever the client sends next
    (its disconnect)."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _refuse(request: Request, exc: MailerError, send: Send) -> None:
    """The refusal in the form the client reads (`refusals.present`)."""
    response = refusals.present(request, exc)
    # The rest of the body is not read: the connection closes after this answer.
    response.headers["Connection"] = "close"
    await response(request.scope, _nothing_more, send)


async def _nothing_more() -> Message:
    return {"type": "http.disconnect"}
