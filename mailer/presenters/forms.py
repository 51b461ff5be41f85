"""A signup form as editors see it (FormPublic): its lists, consent wording, and the URL
and snippet that embed it. Shown by the editors' API and the admin pages alike."""

from __future__ import annotations

from html import escape

from sqlmodel import Session

from mailer.models import Form
from mailer.schemas import FormPublic
from mailer.subscriptions import catalog


def public(session: Session, form: Form, public_url: str) -> FormPublic:
    """`form` with its lists, its page's URL and its embed snippet under `public_url`."""
    assert form.id is not None
    script = f"{public_url}/forms/{form.slug}/embed.js"
    return FormPublic(
        id=form.id,
        slug=form.slug,
        name=form.name,
        heading=form.heading,
        lists=[item.slug for item in catalog.lists_of_form(session, form)],
        consent_text=form.consent_text,
        consent_version=form.consent_version,
        consent_checkbox=form.consent_checkbox,
        redirect_url=form.redirect_url,
        allowed_hosts=list(form.allowed_hosts),
        thanks_message=form.thanks_message,
        form_url=f"{public_url}/forms/{form.slug}",
        embed_snippet=f'<script src="{escape(script)}" async></script>',
    )
