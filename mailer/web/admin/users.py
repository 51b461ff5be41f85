"""/admin/users: Users and API keys (administrators only). A new account's password and
a new key are shown once, on the answer to the form; only their hashes are stored."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from sqlmodel import Session

from mailer import accounts, apikeys
from mailer.errors import Conflict, Invalid
from mailer.http.deps import ServicesDep, SessionDep
from mailer.models import UserRole
from mailer.web.admin.common import AdminDep, PostedDep, redirect, render

router = APIRouter(prefix="/admin/users")

HOME = "/admin/users"
ROLES = [role.value for role in UserRole]


def _page(
    request: Request,
    current: accounts.SignedIn,
    session: Session,
    status_code: int = 200,
    **context: Any,
) -> Response:
    """The users and keys page; after a refused form, with its message and values."""
    context.setdefault("new_user", {"email": "", "role": UserRole.editor.value})
    context.setdefault("new_key", "")
    return render(
        request,
        current,
        "admin/users.html",
        section="users",
        status_code=status_code,
        users=accounts.all_users(session),
        keys=apikeys.all_keys(session),
        roles=ROLES,
        **context,
    )


@router.get("")
def users_page(request: Request, current: AdminDep, session: SessionDep) -> Response:
    return _page(request, current, session)


@router.post("")
def create_user(
    request: Request,
    current: AdminDep,
    _posted: PostedDep,
    services: ServicesDep,
    session: SessionDep,
    email: Annotated[str, Form(max_length=320)] = "",
    role: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """A new account with a generated password, shown on this answer only."""
    password = accounts.generate_password()
    try:
        user = accounts.create_user(
            session, email, accounts.parse_role(role), password, services.clock.now()
        )
    except (Invalid, Conflict) as exc:
        session.rollback()
        return _page(
            request,
            current,
            session,
            status_code=409 if isinstance(exc, Conflict) else 422,
            user_error=_message(exc),
            new_user={"email": email, "role": role},
        )
    return render(
        request,
        current,
        "admin/users_created.html",
        section="users",
        created=user,
        password=password,
    )


@router.post("/{user_id}/role")
def change_role(
    request: Request,
    user_id: int,
    current: AdminDep,
    _posted: PostedDep,
    session: SessionDep,
    role: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    try:
        user = accounts.set_role(session, user_id, accounts.parse_role(role))
    except (Invalid, Conflict) as exc:
        session.rollback()
        status = 409 if isinstance(exc, Conflict) else 422
        return _page(request, current, session, status_code=status, user_error=_message(exc))
    if user.id == current.user.id and user.role != UserRole.admin:
        return redirect("/admin/dashboard", "saved")
    return redirect(HOME, "saved")


@router.get("/{user_id}/disable")
def confirm_disable(
    request: Request, user_id: int, current: AdminDep, session: SessionDep
) -> Response:
    """Asks before disabling: the account's sessions end at once."""
    user = accounts.get_user(session, user_id)
    return render(request, current, "admin/users_disable.html", section="users", target=user)


@router.post("/{user_id}/disable")
def disable_user(
    request: Request,
    user_id: int,
    current: AdminDep,
    _posted: PostedDep,
    services: ServicesDep,
    session: SessionDep,
) -> Response:
    assert current.user.id is not None
    try:
        accounts.disable_user(session, user_id, current.user.id, services.clock.now())
    except Conflict as exc:
        session.rollback()
        return _page(request, current, session, status_code=409, user_error=_message(exc))
    return redirect(HOME, "disabled")


@router.post("/keys")
def create_key(
    request: Request,
    current: AdminDep,
    _posted: PostedDep,
    services: ServicesDep,
    session: SessionDep,
    name: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    """A new API key, shown on this answer only."""
    try:
        key = apikeys.create(session, name, services.clock.now())
    except Invalid as exc:
        return _page(
            request, current, session, status_code=422, key_error=_message(exc), new_key=name
        )
    return render(
        request,
        current,
        "admin/users_key_created.html",
        section="users",
        key_name=name.strip(),
        key=key,
    )


@router.get("/keys/{key_id}/revoke")
def confirm_revoke(
    request: Request, key_id: int, current: AdminDep, session: SessionDep
) -> Response:
    """Asks before revoking: scripts using the key stop working at once."""
    return render(
        request,
        current,
        "admin/users_revoke.html",
        section="users",
        api_key=apikeys.get(session, key_id),
    )


@router.post("/keys/{key_id}/revoke")
def revoke_key(
    key_id: int,
    _current: AdminDep,
    _posted: PostedDep,
    services: ServicesDep,
    session: SessionDep,
) -> Response:
    apikeys.revoke(session, key_id, services.clock.now())
    return redirect(HOME, "revoked")


def _message(exc: Exception) -> str:
    if isinstance(exc, Invalid):
        joint = ": " if exc.message[:1].isupper() else " "
        return f"{exc.field.capitalize()}{joint}{exc.message.rstrip('.')}."
    text = str(exc)
    return text[:1].upper() + text[1:] + "."
