"""Lists and forms: what readers can subscribe to, and the forms that offer them."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from mailer.models import Form, FormConsentVersion, FormList, MailingList
from mailer.subscriptions.addresses import check_header_safe
from mailer.subscriptions.errors import Conflict, InvalidInput, UnknownForm, UnknownList

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def check_slug(field: str, slug: str) -> str:
    if not SLUG.fullmatch(slug):
        raise InvalidInput(field, "must be 1-64 lower-case letters, digits or dashes")
    return slug


def list_by_slug(session: Session, slug: str) -> MailingList:
    found = session.scalars(select(MailingList).where(col(MailingList.slug) == slug)).first()
    if found is None:
        raise UnknownList(slug)
    return found


def all_lists(session: Session) -> list[MailingList]:
    return list(session.scalars(select(MailingList).order_by(col(MailingList.slug))))


def create_list(
    session: Session, slug: str, name: str, description: str, now: datetime, **options: Any
) -> MailingList:
    """A new list; `options` sets welcome_enabled, welcome_articles, archive_enabled."""
    check_slug("slug", slug)
    check_header_safe("name", name)  # list names appear in subjects
    if session.scalars(select(MailingList).where(col(MailingList.slug) == slug)).first():
        raise Conflict(f"list {slug!r} exists")
    mailing_list = MailingList(
        slug=slug, name=name, description=description, created_at=now, **options
    )
    session.add(mailing_list)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"list {slug!r} exists") from exc
    return mailing_list


def update_list(
    session: Session, mailing_list: MailingList, changes: dict[str, Any]
) -> MailingList:
    if "name" in changes:
        check_header_safe("name", changes["name"])
    for field, value in changes.items():
        setattr(mailing_list, field, value)
    session.add(mailing_list)
    session.flush()
    return mailing_list


def form_by_slug(session: Session, slug: str) -> Form:
    found = session.scalars(select(Form).where(col(Form.slug) == slug)).first()
    if found is None:
        raise UnknownForm(slug)
    return found


def all_forms(session: Session) -> list[Form]:
    return list(session.scalars(select(Form).order_by(col(Form.slug))))


def lists_of_form(session: Session, form: Form) -> list[MailingList]:
    return list(
        session.scalars(
            select(MailingList)
            .join(FormList, col(FormList.list_id) == MailingList.id)
            .where(col(FormList.form_id) == form.id)
            .order_by(col(MailingList.slug))
        )
    )


def _resolve_lists(session: Session, slugs: list[str]) -> list[MailingList]:
    if not slugs:
        raise InvalidInput("lists", "a form must offer at least one list")
    return [list_by_slug(session, slug) for slug in dict.fromkeys(slugs)]


def create_form(
    session: Session,
    *,
    slug: str,
    list_slugs: list[str],
    consent_text: str,
    now: datetime,
    name: str = "",
    heading: str = "",
    consent_checkbox: bool = False,
    redirect_url: str = "",
    thanks_message: str = "",
) -> Form:
    check_slug("slug", slug)
    if not consent_text.strip():
        raise InvalidInput("consent_text", "is required")
    check_redirect_url(redirect_url)
    lists = _resolve_lists(session, list_slugs)
    if session.scalars(select(Form).where(col(Form.slug) == slug)).first():
        raise Conflict(f"form {slug!r} exists")
    form = Form(
        slug=slug,
        name=name or slug,
        consent_text=consent_text,
        consent_checkbox=consent_checkbox,
        redirect_url=redirect_url,
        thanks_message=thanks_message,
        created_at=now,
        updated_at=now,
    )
    if heading:
        form.heading = heading
    session.add(form)
    session.flush()
    assert form.id is not None
    for mailing_list in lists:
        assert mailing_list.id is not None
        session.add(FormList(form_id=form.id, list_id=mailing_list.id))
    session.add(
        FormConsentVersion(form_id=form.id, version=1, consent_text=consent_text, created_at=now)
    )
    session.flush()
    return form


def update_form(
    session: Session,
    form: Form,
    now: datetime,
    *,
    list_slugs: list[str] | None = None,
    consent_text: str | None = None,
    name: str | None = None,
    heading: str | None = None,
    consent_checkbox: bool | None = None,
    redirect_url: str | None = None,
    thanks_message: str | None = None,
) -> Form:
    """Change a form; new consent wording becomes a new version, the old ones are kept."""
    assert form.id is not None
    if consent_text is not None and consent_text != form.consent_text:
        if not consent_text.strip():
            raise InvalidInput("consent_text", "is required")
        form.consent_version += 1
        form.consent_text = consent_text
        session.add(
            FormConsentVersion(
                form_id=form.id,
                version=form.consent_version,
                consent_text=consent_text,
                created_at=now,
            )
        )
    if list_slugs is not None:
        lists = _resolve_lists(session, list_slugs)
        for link in session.scalars(select(FormList).where(col(FormList.form_id) == form.id)):
            session.delete(link)
        session.flush()
        for mailing_list in lists:
            assert mailing_list.id is not None
            session.add(FormList(form_id=form.id, list_id=mailing_list.id))
    if redirect_url is not None:
        form.redirect_url = check_redirect_url(redirect_url)
    if thanks_message is not None:
        form.thanks_message = thanks_message
    if name is not None:
        form.name = name
    if heading is not None:
        form.heading = heading
    if consent_checkbox is not None:
        form.consent_checkbox = consent_checkbox
    form.updated_at = now
    session.add(form)
    session.flush()
    return form


def check_redirect_url(url: str) -> str:
    if url and not re.match(r"^https?://[^\s/]+", url):
        raise InvalidInput("redirect_url", "must be an absolute http(s) URL")
    check_header_safe("redirect_url", url)
    return url
