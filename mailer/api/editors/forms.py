"""/api/v1/forms: signup forms, their lists and their consent wording (versioned)."""

from __future__ import annotations

from fastapi import APIRouter

from mailer.api.deps import EditorDep
from mailer.http.deps import ServicesDep, SessionDep
from mailer.presenters.forms import public
from mailer.schemas import FormCreate, FormPublic, FormUpdate
from mailer.subscriptions import catalog, form_actions

router = APIRouter(prefix="/forms", tags=["forms"])


@router.post("", status_code=201, response_model=FormPublic)
def create_form(
    body: FormCreate, session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> FormPublic:
    """Create a form offering `lists`; 422 for an unknown list, 409 for a taken slug."""
    public_url = services.settings.public_url
    form = form_actions.create(session, body, services.clock.now(), public_url)
    return public(session, form, public_url)


@router.get("", response_model=list[FormPublic])
def list_forms(session: SessionDep, services: ServicesDep, _editor: EditorDep) -> list[FormPublic]:
    return [
        public(session, form, services.settings.public_url) for form in catalog.all_forms(session)
    ]


@router.get("/{slug}", response_model=FormPublic)
def get_form(
    slug: str, session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> FormPublic:
    return public(session, catalog.form_by_slug(session, slug), services.settings.public_url)


@router.patch("/{slug}", response_model=FormPublic)
def update_form(
    slug: str, body: FormUpdate, session: SessionDep, services: ServicesDep, _editor: EditorDep
) -> FormPublic:
    """Change a form; a new consent wording becomes a new consent_version."""
    public_url = services.settings.public_url
    form = form_actions.update(session, slug, body, services.clock.now(), public_url)
    return public(session, form, public_url)
