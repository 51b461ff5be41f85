"""Security headers on every answer: a Content-Security-Policy, no MIME sniffing, a
referrer policy, and framing refused except for the embeddable signup form pages.

A route that needs another policy (an email preview shown in a sandboxed frame) sets its
own Content-Security-Policy; this middleware fills in only what an answer lacks. A past
digest in the public archive (editors' HTML, cleaned) gets the strictest: no script, no
form, no frame, no base, and a sandbox, so that even HTML the cleaning missed can neither
run nor reach this origin's cookies.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Pages third-party sites may show in an iframe: the signup form and where it leads.
FRAMEABLE = re.compile(r"^/forms/[^/]+(/thanks)?/?$")
# A past digest in the public archive (not the list's index or its feed).
ARCHIVE_ISSUE = re.compile(r"^/archive/[^/]+/(?!feed\.xml$)[^/]+/?$")
# FastAPI's interactive API docs load their script and styles from a CDN.
DOCS = ("/docs", "/redoc")

PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
    "frame-src 'self'; frame-ancestors {ancestors}"
)
ARCHIVE_ISSUE_POLICY = (
    "default-src 'none'; img-src 'self' https: data:; style-src 'self' 'unsafe-inline'; "
    "form-action 'none'; base-uri 'none'; frame-src 'none'; object-src 'none'; "
    "frame-ancestors 'none'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox"
)
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' https: data:; "
    "base-uri 'none'; object-src 'none'; frame-ancestors 'none'"
)


def policy_for(path: str) -> tuple[str, bool]:
    """The Content-Security-Policy for `path`, and whether other sites may frame it."""
    if path.startswith(DOCS):
        return DOCS_POLICY, False
    if ARCHIVE_ISSUE.match(path):
        return ARCHIVE_ISSUE_POLICY, False
    if FRAMEABLE.match(path):
        # Forms post to this server only; in a frame on any site, on any scheme.
        return PAGE_POLICY.format(ancestors="*"), True
    return PAGE_POLICY.format(ancestors="'none'"), False


class SecurityHeaders:
    """Pure ASGI middleware (streams pass through untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy, frameable = policy_for(scope["path"])

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                wanted = [
                    (b"content-security-policy", policy.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"strict-origin-when-cross-origin"),
                ]
                if not frameable:
                    wanted.append((b"x-frame-options", b"DENY"))
                headers += [(name, value) for name, value in wanted if name not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
