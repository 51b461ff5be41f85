"""Lists and forms: what readers can subscribe to, and the forms that offer them."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from mailer.errors import Conflict, Invalid
from mailer.models import Form, FormConsentVersion, FormList, MailingList
from mailer.subscriptions.addresses import check_header_safe
from mailer.subscriptions.errors import UnknownForm, UnknownList

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def check_slug(field: str, slug: str) -> str:
    if not SLUG.fullmatch(slug):
        raise Invalid(field, "must be 1-64 lower-case letters, digits or dashes")
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
        raise Invalid("lists", "a form must offer at least one list")
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
    allowed_hosts: list[str] | None = None,
    own_host: str = "",
) -> Form:
    """A new form. Without `allowed_hosts`, the redirect URL's own host is allowed (as for
    forms made before allowed hosts existed); with them, the redirect must be on one."""
    check_slug("slug", slug)
    if not consent_text.strip():
        raise Invalid("consent_text", "is required")
    if allowed_hosts is None:
        allowed_hosts = [host_of(redirect_url)] if host_of(redirect_url) else []
    hosts = check_allowed_hosts(allowed_hosts)
    check_redirect_url(redirect_url, hosts, own_host)
    lists = _resolve_lists(session, list_slugs)
    if session.scalars(select(Form).where(col(Form.slug) == slug)).first():
        raise Conflict(f"form {slug!r} exists")
    form = Form(
        slug=slug,
        name=name or slug,
        consent_text=consent_text,
        consent_checkbox=consent_checkbox,
        redirect_url=redirect_url,
        allowed_hosts=hosts,
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
    allowed_hosts: list[str] | None = None,
    own_host: str = "",
) -> Form:
    """Change a form; new consent wording becomes a new version, the old ones are kept.
    The redirect URL (new or kept) must be on the allowed hosts (new or kept)."""
    assert form.id is not None
    hosts = check_allowed_hosts(allowed_hosts) if allowed_hosts is not None else None
    if redirect_url is not None or hosts is not None:
        check_redirect_url(
            redirect_url if redirect_url is not None else form.redirect_url,
            hosts if hosts is not None else list(form.allowed_hosts),
            own_host,
        )
    if consent_text is not None and consent_text != form.consent_text:
        if not consent_text.strip():
            raise Invalid("consent_text", "is required")
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
        form.redirect_url = redirect_url
    if hosts is not None:
        form.allowed_hosts = hosts
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


MAX_ALLOWED_HOSTS = 20
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def host_of(url: str) -> str:
    """The lower-case host name of an absolute URL ("" when it has none)."""
    try:
        return (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:
        return ""


def check_allowed_hosts(hosts: list[str]) -> list[str]:
    """Host names (lower-cased, without duplicates); a URL, port or path is refused."""
    cleaned: list[str] = []
    for raw in hosts:
        host = raw.strip().lower().rstrip(".")
        if not _HOST_NAME.fullmatch(host):
            raise Invalid(
                "allowed_hosts",
                f"{raw[:100]!r} is not a host name (give it alone, e.g. www.example.com)",
            )
        if host not in cleaned:
            cleaned.append(host)
    if len(cleaned) > MAX_ALLOWED_HOSTS:
        raise Invalid("allowed_hosts", f"at most {MAX_ALLOWED_HOSTS} hosts")
    return cleaned


def check_redirect_url(url: str, allowed_hosts: list[str], own_host: str) -> str:
    """An absolute http(s) URL on one of `allowed_hosts` or on this server (`own_host`);
    "" (no redirect) passes. Backslashes and user names are refused: browsers and URL
    parsers disagree about which host such a URL names."""
    if not url:
        return url
    check_header_safe("redirect_url", url)
    if not re.match(r"^https?://[^\s/]+", url) or "\\" in url or not host_of(url):
        raise Invalid("redirect_url", "must be an absolute http(s) URL")
    if "@" in urlsplit(url).netloc:
        raise Invalid("redirect_url", "must not contain a user name or password")
    host = host_of(url)
    if host not in allowed_hosts and host != own_host:
        raise Invalid(
            "redirect_url",
            f"is on {host}, which is not one of the form's allowed hosts "
            f"({', '.join(allowed_hosts) or 'none'}); add it to allowed_hosts first",
        )
    return url


def thanks_redirect(form: Form, own_host: str) -> str:
    """Where a signup through `form` goes next: its redirect URL when that is (still) on
    an allowed host, else the form's own thank-you page. Nothing in the request counts."""
    try:
        if form.redirect_url and check_redirect_url(
            form.redirect_url, list(form.allowed_hosts), own_host
        ):
            return form.redirect_url
    except Invalid:
        pass
    return f"/forms/{form.slug}/thanks"
