"""FastAPI dependencies: services, database sessions, editor authentication, client IP.

The editors' API takes a bearer API key, or the session cookie of an editor signed in to
/admin/ (the web interface is a client of this API). With the cookie, a call that
changes anything must also carry the session's CSRF token in `X-CSRF-Token`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from sqlmodel import Session
from starlette.requests import HTTPConnection

from mailer import accounts, apikeys
from mailer.db import session_scope
from mailer.services import Services


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    with session_scope(services.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False)


SESSION_COOKIE = "mailer_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Editor:
    """Who is calling the editors' API: an API key, or a person signed in to /admin/."""

    name: str
    role: str
    user_id: int | None = None


def signed_in_browser(request: Request, services: Services) -> accounts.SignedIn | None:
    """The person behind the session cookie, read in a session of its own that is closed
    at once: a caller that streams, or opens sessions of its own, holds no transaction
    (SQLite runs one at a time)."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token:
        return None
    with session_scope(services.engine) as session:
        return accounts.signed_in(session, token, services.clock.now())


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


def client_ip(request: Request, trusted_proxies: list[str]) -> str:
    """The peer's address, or the first untrusted hop of X-Forwarded-For behind our proxies."""
    peer = request.client.host if request.client else ""
    networks = [ipaddress.ip_network(cidr, strict=False) for cidr in trusted_proxies]

    def trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in networks)

    if not networks or not trusted(peer):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return hops[0] if hops else peer


MAX_ROW_ID = 2**63 - 1
"""The largest id a row can have (a signed 64-bit integer in both databases)."""


def row_ids_in_range(request: Request) -> None:
    """404 for a numeric id in the path that no row can have, before any query sees it (the
    database drivers fail on integers past 64 bits)."""
    for value in request.path_params.values():
        digits = value.removeprefix("-") if isinstance(value, str) else ""
        if digits.isascii() and digits.isdigit() and int(digits) > MAX_ROW_ID:
            raise HTTPException(404, "not found")
