"""FastAPI dependencies both HTTP surfaces (the editors' API and the web pages) use: the
process's services, a database session per request, the signed-in browser behind the
session cookie, the client's IP, and refusing row ids no row can have."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlmodel import Session

from mailer import accounts
from mailer.db import session_scope
from mailer.services import Services


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    with session_scope(services.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


SESSION_COOKIE = "mailer_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def signed_in_browser(request: Request, services: Services) -> accounts.SignedIn | None:
    """The person behind the session cookie, read in a session of its own that is closed
    at once: a caller that streams, or opens sessions of its own, holds no transaction
    (SQLite runs one at a time)."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token:
        return None
    with session_scope(services.engine) as session:
        return accounts.signed_in(session, token, services.clock.now())


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
