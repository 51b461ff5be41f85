"""/api/v1/lists: the mailing lists readers subscribe to."""

from __future__ import annotations

from fastapi import APIRouter

from mailer.api.deps import EditorDep
from mailer.http.deps import ServicesDep, SessionDep
from mailer.models import MailingList
from mailer.schemas import ListCreate, ListPublic, ListUpdate
from mailer.subscriptions import catalog

router = APIRouter(prefix="/lists", tags=["lists"])


def public(mailing_list: MailingList) -> ListPublic:
    return ListPublic.model_validate(mailing_list, from_attributes=True)


@router.post("", status_code=201, response_model=ListPublic)
def create_list(
    body: ListCreate, session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> ListPublic:
    """Create a list; 409 when the slug is taken."""
    created = catalog.create_list(
        session,
        body.slug,
        body.name,
        body.description,
        services.clock.now(),
        **body.model_dump(exclude={"slug", "name", "description"}),
    )
    return public(created)


@router.get("", response_model=list[ListPublic])
def list_lists(session: SessionDep, _editor: EditorDep) -> list[ListPublic]:
    return [public(item) for item in catalog.all_lists(session)]


@router.get("/{slug}", response_model=ListPublic)
def get_list(slug: str, session: SessionDep, _editor: EditorDep) -> ListPublic:
    return public(catalog.list_by_slug(session, slug))


@router.patch("/{slug}", response_model=ListPublic)
def update_list(slug: str, body: ListUpdate, session: SessionDep, _editor: EditorDep) -> ListPublic:
    """Rename a list or switch its welcome mail and public archive on or off."""
    mailing_list = catalog.list_by_slug(session, slug)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)  # null: left as it is
    return public(catalog.update_list(session, mailing_list, changes))
