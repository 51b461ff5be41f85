"""Who calls the editors' API (`EditorDep`): an API key, or a signed-in editor's session.

The editors' API takes a bearer API key, or the session cookie of an editor signed in to
/admin/ (the web interface is a client of this API). With the cookie, a call that
changes anything must also carry the session's CSRF token in `X-CSRF-Token`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from starlette.requests import HTTPConnection

from mailer import apikeys
from mailer.db import session_scope
from mailer.http.deps import CSRF_HEADER, SAFE_METHODS, ServicesDep, signed_in_browser
from mailer.services import Services

_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Editor:
    """Who is calling the editors' API: an API key, or a person signed in to /admin/."""

    name: str
    role: str
    user_id: int | None = None


def _signed_in_editor(request: Request, services: Services) -> Editor | None:
    current = signed_in_browser(request, services)
    if current is None:
        return None
    if request.method not in SAFE_METHODS and not current.accepts(
        request.headers.get(CSRF_HEADER, "")
    ):
        raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header")
    return Editor(name=current.user.email, role=current.user.role, user_id=current.user.id)


EDITOR_STATE = "mailer_editor"
"""Where the editors' API keeps who is calling, once decided (see api/keyfirst.py)."""


def bearer_key(request: HTTPConnection) -> str | None:
    """The key in `Authorization: Bearer <key>`, read as HTTPBearer reads it; else None."""
    authorization = request.headers.get("Authorization")
    scheme, credentials = get_authorization_scheme_param(authorization)
    if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
        return None
    return credentials


def identify_editor(request: Request, services: Services) -> Editor:
    """Who is calling the editors' API, or an HTTPException: 401 without a good key or
    session, 403 for a session's change without its CSRF token. Reads only the headers."""
    key = bearer_key(request)
    if key is None:
        editor = _signed_in_editor(request, services)
        if editor is not None:
            return editor
        raise HTTPException(
            401,
            "an API key is required (Authorization: Bearer <key>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # A session of its own, closed at once: the route's session (if any) is separate, and
    # a streaming answer must not keep a transaction open while it streams.
    with session_scope(services.engine) as session:
        found = apikeys.authenticate(session, key, services.clock.now())
        if found is None:
            raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
        return Editor(name=found.name, role="editor")


def require_editor(
    request: Request,
    services: ServicesDep,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Editor:
    """The caller decided before the body was read (`EDITOR_STATE`), else decided now.
    `_credentials` declares the bearer scheme in /openapi.json."""
    decided = getattr(request.state, EDITOR_STATE, None)
    if isinstance(decided, Editor):
        return decided
    return identify_editor(request, services)


EditorDep = Annotated[Editor, Depends(require_editor)]
