"""/admin/forms: signup forms: consent wording (versioned), lists offered, thank-you
page, embed snippet and a live preview.

What was typed is checked by the API's own `FormCreate` / `FormUpdate` and saved by the
same actions as /api/v1/forms (`subscriptions.form_actions`); a new consent wording
becomes a new consent version there. Bad input re-renders the page (422), writing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlmodel import Session, col, select

from mailer.accounts import SignedIn
from mailer.errors import Conflict, Invalid, MailerError
from mailer.http.deps import ServicesDep, SessionDep
from mailer.models import Form, FormConsentVersion
from mailer.presenters.forms import public
from mailer.schemas import FormCreate, FormUpdate
from mailer.subscriptions import catalog, form_actions
from mailer.subscriptions.errors import UnknownForm, UnknownList
from mailer.web.admin import drafts
from mailer.web.admin.common import PostedDep, SignedInDep, pages, redirect, render

router = APIRouter(prefix="/admin/forms")

# The preview is the readers' form page shown in a frame of the editor's page only.
PREVIEW_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
        "form-action 'none'; base-uri 'none'; object-src 'none'; frame-ancestors 'self'"
    ),
    "X-Frame-Options": "SAMEORIGIN",
    "Cache-Control": "no-store",
}


@dataclass
class FormDraft:
    """What the editor typed into the form editor."""

    slug: str = ""
    name: str = ""
    heading: str = ""
    consent_text: str = ""
    consent_checkbox: bool = False
    lists: list[str] = field(default_factory=list)
    redirect_url: str = ""
    allowed_hosts: str = ""
    """One host name a line (or separated by commas or spaces)."""
    thanks_message: str = ""

    @classmethod
    async def posted(cls, request: Request) -> FormDraft:
        form = await request.form()

        def text(name: str) -> str:
            value = form.get(name, "")
            # Browsers send a textarea's line breaks as CRLF; store them as LF.
            return value.replace("\r\n", "\n").strip() if isinstance(value, str) else ""

        return cls(
            slug=text("slug"),
            name=text("name"),
            heading=text("heading"),
            consent_text=text("consent_text"),
            consent_checkbox=text("consent_checkbox") in ("1", "on", "true"),
            lists=[value for value in form.getlist("lists") if isinstance(value, str)],
            redirect_url=text("redirect_url"),
            allowed_hosts=text("allowed_hosts"),
            thanks_message=text("thanks_message"),
        )

    @classmethod
    def of(cls, session: Session, form: Form) -> FormDraft:
        return cls(
            slug=form.slug,
            name=form.name,
            heading=form.heading,
            consent_text=form.consent_text,
            consent_checkbox=form.consent_checkbox,
            lists=[item.slug for item in catalog.lists_of_form(session, form)],
            redirect_url=form.redirect_url,
            allowed_hosts="\n".join(form.allowed_hosts),
            thanks_message=form.thanks_message,
        )

    @property
    def host_list(self) -> list[str]:
        return self.allowed_hosts.replace(",", " ").split()

    def create_body(self) -> FormCreate:
        """The new form as the API takes it (ValidationError past the schema's limits)."""
        return FormCreate.model_validate(
            {
                "slug": self.slug,
                "lists": self.lists,
                "consent_text": self.consent_text,
                "redirect_url": self.redirect_url,
                "name": self.name,
                "heading": self.heading,
                "consent_checkbox": self.consent_checkbox,
                "thanks_message": self.thanks_message,
                "allowed_hosts": self.host_list,
            }
        )

    def update_body(self, form: Form) -> FormUpdate:
        """The changes as the API takes them; an emptied name or heading keeps the form's."""
        return FormUpdate.model_validate(
            {
                "lists": self.lists,
                "consent_text": self.consent_text,
                "redirect_url": self.redirect_url,
                "name": self.name or form.slug,
                "heading": self.heading or None,
                "consent_checkbox": self.consent_checkbox,
                "thanks_message": self.thanks_message,
                "allowed_hosts": self.host_list,
            }
        )


LABELS = {
    "redirect_url": "The thank-you page address",
    "allowed_hosts": "Allowed hosts:",
    "slug": "The slug",
    "name": "The name",
    "heading": "The heading",
    "consent_text": "The consent wording",
    "lists": "The lists",
    "thanks_message": "The thank-you message",
}
SENTENCES = {
    "lists too_short": "Choose at least one list for the form to offer.",
}


def _refusal(exc: ValidationError | MailerError) -> str:
    """Why the form was refused, in the page's words."""
    if isinstance(exc, ValidationError):
        return drafts.problems(exc, LABELS, SENTENCES, shape="{label} {phrase}.", joint=" ")
    if isinstance(exc, UnknownList):
        return f"There is no list {exc.slug}."
    if isinstance(exc, Conflict):
        return "A form with that slug exists already."
    if isinstance(exc, Invalid):
        return _sentence(exc)
    return str(exc)


def _sentence(exc: Invalid) -> str:
    return f"{LABELS.get(exc.field, exc.field)} {exc.message}."


def _form(session: Session, slug: str) -> Form:
    try:
        return catalog.form_by_slug(session, slug)
    except UnknownForm as exc:
        raise HTTPException(404, f"There is no form {slug!r}.") from exc


def _versions(session: Session, form: Form) -> list[FormConsentVersion]:
    return list(
        session.scalars(
            select(FormConsentVersion)
            .where(col(FormConsentVersion.form_id) == form.id)
            .order_by(col(FormConsentVersion.version).desc())
        )
    )


def _snippets(form_url: str, script_snippet: str, heading: str) -> dict[str, str]:
    """What an editor pastes into an article page: the script, or an iframe."""
    iframe = (
        f'<iframe src="{escape(form_url)}" title="{escape(heading)}" width="100%" '
        'height="420" style="border:0"></iframe>'
    )
    return {"script": script_snippet, "iframe": iframe}


def _list_page(
    request: Request,
    current: SignedIn,
    session: Session,
    services: ServicesDep,
    draft: FormDraft | None = None,
    error: str = "",
    status_code: int = 200,
) -> Response:
    public_url = services.settings.public_url
    return render(
        request,
        current,
        "admin/forms.html",
        section="forms",
        status_code=status_code,
        forms=[public(session, form, public_url) for form in catalog.all_forms(session)],
        lists=catalog.all_lists(session),
        draft=draft or FormDraft(),
        error=error,
    )


def _edit_page(
    request: Request,
    current: SignedIn,
    session: Session,
    services: ServicesDep,
    form: Form,
    draft: FormDraft | None = None,
    error: str = "",
    status_code: int = 200,
) -> Response:
    shown = public(session, form, services.settings.public_url)
    return render(
        request,
        current,
        "admin/form.html",
        section="forms",
        status_code=status_code,
        form=shown,
        draft=draft or FormDraft.of(session, form),
        lists=catalog.all_lists(session),
        versions=_versions(session, form),
        snippets=_snippets(shown.form_url, shown.embed_snippet, shown.heading),
        error=error,
    )


@router.get("")
def forms_page(
    request: Request, current: SignedInDep, session: SessionDep, services: ServicesDep
) -> Response:
    """Every form, and a form to create one."""
    return _list_page(request, current, session, services)


@router.post("")
async def create_form(
    request: Request, current: PostedDep, session: SessionDep, services: ServicesDep
) -> Response:
    draft = await FormDraft.posted(request)
    try:
        form_actions.create(
            session, draft.create_body(), services.clock.now(), services.settings.public_url
        )
    except (ValidationError, MailerError) as exc:
        session.rollback()
        return _list_page(request, current, session, services, draft, _refusal(exc), 422)
    return redirect(f"/admin/forms/{draft.slug}", "created")


@router.get("/{slug}")
def form_page(
    slug: str, request: Request, current: SignedInDep, session: SessionDep, services: ServicesDep
) -> Response:
    """Edit one form; its embed snippets, consent versions and a live preview."""
    form = _form(session, slug)
    return _edit_page(request, current, session, services, form)


@router.post("/{slug}")
async def update_form(
    slug: str, request: Request, current: PostedDep, session: SessionDep, services: ServicesDep
) -> Response:
    """Save the form; a changed consent wording becomes a new consent version."""
    form = _form(session, slug)
    draft = await FormDraft.posted(request)
    draft.slug = form.slug
    try:
        form_actions.update(
            session,
            slug,
            draft.update_body(form),
            services.clock.now(),
            services.settings.public_url,
        )
    except (ValidationError, MailerError) as exc:
        session.rollback()
        form = _form(session, slug)
        return _edit_page(request, current, session, services, form, draft, _refusal(exc), 422)
    return redirect(f"/admin/forms/{form.slug}", "saved")


@router.get("/{slug}/preview")
def preview(slug: str, request: Request, _current: SignedInDep, session: SessionDep) -> Response:
    """The readers' form page as it would look with the wording being typed (query
    `draft=1` with heading, consent_text, consent_checkbox and lists), or as saved."""
    form = _form(session, slug)
    offered = catalog.lists_of_form(session, form)
    view: dict[str, Any] = {
        "slug": form.slug,
        "heading": form.heading,
        "consent_text": form.consent_text,
        "consent_checkbox": form.consent_checkbox,
        "lists": [{"slug": item.slug, "name": item.name} for item in offered],
    }
    query = request.query_params
    if query.get("draft"):
        wanted = set(query.getlist("lists"))
        heading = query.get("heading", "")[: drafts.max_length(FormCreate, "heading")]
        view.update(
            heading=heading or form.heading,
            consent_text=query.get("consent_text", "")[
                : drafts.max_length(FormCreate, "consent_text")
            ],
            consent_checkbox=bool(query.get("consent_checkbox")),
            lists=[
                {"slug": item.slug, "name": item.name}
                for item in catalog.all_lists(session)
                if item.slug in wanted
            ],
        )
    return pages(request).render(
        "form.html", headers=dict(PREVIEW_HEADERS), form=view, preview=True
    )
