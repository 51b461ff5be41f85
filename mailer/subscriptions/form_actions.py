"""What an editor does with a signup form, once for every surface: create one, and change
one (a new consent wording becomes a new consent version).

The editors' API and the admin pages parse their input into `FormCreate` / `FormUpdate`,
call these, and present the form or the `mailer.errors` refusal raised here.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from mailer.models import Form
from mailer.schemas import FormCreate, FormUpdate
from mailer.subscriptions import catalog
from mailer.subscriptions.addresses import check_header_safe


def create(session: Session, body: FormCreate, now: datetime, public_url: str) -> Form:
    """A new form offering `body.lists`; UnknownList, Invalid for a bad slug, wording,
    name or redirect, Conflict for a taken slug."""
    check_header_safe("name", body.name)
    return catalog.create_form(
        session,
        slug=body.slug,
        list_slugs=body.lists,
        consent_text=body.consent_text,
        now=now,
        name=body.name,
        heading=body.heading,
        consent_checkbox=body.consent_checkbox,
        redirect_url=body.redirect_url or "",
        thanks_message=body.thanks_message,
        allowed_hosts=body.allowed_hosts,
        own_host=catalog.host_of(public_url),
    )


def update(session: Session, slug: str, body: FormUpdate, now: datetime, public_url: str) -> Form:
    """Change what `body` sets (null leaves a field as it is); UnknownForm, UnknownList,
    Invalid as for `create`."""
    if body.name is not None:
        check_header_safe("name", body.name)
    return catalog.update_form(
        session,
        catalog.form_by_slug(session, slug),
        now,
        list_slugs=body.lists,
        consent_text=body.consent_text,
        name=body.name,
        heading=body.heading,
        consent_checkbox=body.consent_checkbox,
        redirect_url=body.redirect_url,
        thanks_message=body.thanks_message,
        allowed_hosts=body.allowed_hosts,
        own_host=catalog.host_of(public_url),
    )
