"""What readers do, one use case each: see a signup form, sign up, open and follow a
confirmation link, open the preference centre, leave, change preferences.

Each takes plain inputs and the collaborators it needs (`Desk`, which the running
process provides), opens its own transaction, and returns plain values or raises a kind
of `mailer.errors.MailerError` in words meant for the reader (marked for translation).
Counting, waking the sender and presenting the answer are the caller's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlmodel import Session, select

from mailer.clock import Clock
from mailer.config import Settings
from mailer.db import session_scope
from mailer.errors import N_, Invalid, NotFound, TooMany
from mailer.models import Confirmation, Form, MailingList, Subscriber, SubscriptionStatus
from mailer.ratelimit import SlidingWindowLimiter
from mailer.subscriptions import catalog, leaving, ledger, signup
from mailer.subscriptions.addresses import address_digest, check_header_safe, normalize_email
from mailer.subscriptions.errors import UnknownForm
from mailer.tokens import BadToken, Purpose, Signer

log = logging.getLogger(__name__)


class Desk(Protocol):
    """The collaborators readers' use cases need."""

    engine: Engine
    settings: Settings
    clock: Clock
    signer: Signer
    address_limiter: SlidingWindowLimiter


@dataclass
class Signup:
    """A signup as the reader submitted it (already parsed from the request)."""

    email: str = ""
    name: str = ""
    form: str = "default"
    lists: list[str] = field(default_factory=list)
    source_url: str = ""
    website: str = ""
    """The honeypot: anything in it means a bot."""
    consent: bool = False


# What a reader is told when the catalogue has no translation of a field's exact problem.
_GENERAL = {
    "email": N_("Please enter a valid email address."),
    "name": N_("Please check the name you entered."),
    "source_url": N_("The address of the page you came from is not valid."),
}


def _for_reader(exc: Invalid) -> Invalid:
    """An address check's refusal in a reader's words: email-validator's are whole
    sentences, ours are fragments that follow the field's name ("email is required")."""
    message = exc.message if exc.message[:1].isupper() else f"{exc.field} {exc.message}"
    return Invalid(exc.field, message, general=_GENERAL.get(exc.field, ""))


def _form(session: Session, slug: str) -> Form:
    """The form `slug`, or the reader's 404 naming it."""
    try:
        return catalog.form_by_slug(session, slug)
    except UnknownForm as exc:
        raise NotFound(
            "form", N_("there is no signup form %(form)r"), params={"form": slug}
        ) from exc


def form_view(desk: Desk, slug: str) -> dict[str, Any]:
    """What the signup form `slug` shows: heading, wording, lists, thank-you message."""
    with session_scope(desk.engine) as session:
        form = _form(session, slug)
        lists = catalog.lists_of_form(session, form)
        return {
            "slug": form.slug,
            "heading": form.heading,
            "consent_text": form.consent_text,
            "consent_checkbox": form.consent_checkbox,
            "thanks_message": form.thanks_message,
            "lists": [{"slug": item.slug, "name": item.name} for item in lists],
        }


def thanks_url(desk: Desk, form_slug: str) -> str:
    """Where a browser goes after signing up on `form_slug`."""
    with session_scope(desk.engine) as session:
        form = catalog.form_by_slug(session, form_slug)
        return catalog.thanks_redirect(form, catalog.host_of(desk.settings.public_url))


def sign_up(desk: Desk, fields: Signup, ip: str, user_agent: str) -> signup.SignupResult | None:
    """Validate and record a signup (pending, with a confirmation mail queued when one is
    due); None when the honeypot was filled. The answer never tells whether the address
    was known."""
    with session_scope(desk.engine) as session:
        form = _form(session, fields.form)
        if fields.website:
            log.info("honeypot filled on form %s; ignored", form.slug)
            return None
        offered = {item.slug: item for item in catalog.lists_of_form(session, form)}
        unknown = [slug for slug in fields.lists if slug not in offered]
        if unknown:
            raise Invalid(
                "lists",
                N_("form %(form)r does not offer %(lists)s"),
                params={"form": form.slug, "lists": ", ".join(unknown)},
            )
        chosen = [offered[slug] for slug in dict.fromkeys(fields.lists)] or list(offered.values())
        try:
            email = normalize_email(fields.email)
            name = check_header_safe("name", fields.name)[:200]
            check_header_safe("source_url", fields.source_url)
        except Invalid as exc:
            raise _for_reader(exc) from exc
        if form.consent_checkbox and not fields.consent:
            raise Invalid("consent", N_("please tick the box to agree to the terms"))
        wait = desk.address_limiter.hit(address_digest(email))
        if wait:
            raise TooMany(N_("too many signups for this address; try again later"), wait)
        context = ledger.ConsentContext(
            form=form.slug,
            consent_text=form.consent_text,
            consent_version=form.consent_version,
            source_url=fields.source_url,
            ip=ip,
            user_agent=user_agent,
        )
        return signup.request(
            session,
            email=email,
            name=name,
            lists=chosen,
            form_id=form.id,
            context=context,
            settings=desk.settings.signup,
            now=desk.clock.now(),
        )


def _confirmation_id(signer: Signer, token: str) -> int:
    try:
        data = signer.verify(Purpose.confirm, token)
    except BadToken as exc:
        raise NotFound("token") from exc
    confirmation_id = data.get("c")
    if not isinstance(confirmation_id, int):
        raise NotFound("token")
    return confirmation_id


def confirmation_state(desk: Desk, token: str) -> str:
    """ "open", "used" or "expired" (expired or revoked) for a confirm link; NotFound for a
    link that is not one of ours."""
    confirmation_id = _confirmation_id(desk.signer, token)
    with session_scope(desk.engine) as session:
        confirmation = session.get(Confirmation, confirmation_id)
        if confirmation is None:
            raise NotFound("confirmation")
        if confirmation.used_at is not None:
            return "used"
        if confirmation.revoked_at is not None or confirmation.expires_at <= desk.clock.now():
            return "expired"
        return "open"


def confirm(desk: Desk, token: str, context: ledger.ConsentContext) -> signup.ConfirmResult:
    """Confirm the signup a confirm link belongs to; repeating it changes nothing.
    NotFound for a bad link, `Expired` for one past its time or revoked."""
    confirmation_id = _confirmation_id(desk.signer, token)
    with session_scope(desk.engine) as session:
        return signup.confirm(session, confirmation_id, context, desk.clock.now())


def preferences(desk: Desk, subscriber_id: int, list_id: int | None) -> dict[str, Any]:
    """What the preference centre shows the reader a token names: each list they are or
    were on (and the one the link came from), its status and topics."""
    with session_scope(desk.engine) as session:
        subscriber_id = leaving.surviving_id(session, subscriber_id)
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None:
            raise NotFound("subscriber")
        statuses = leaving.list_statuses(session, subscriber_id)
        chosen = {
            sub.list_id: sub.topics
            for sub in signup.subscriptions_by_list(session, subscriber_id).values()
        }
        target = session.get(MailingList, list_id) if list_id is not None else None
        return {
            "erased": subscriber.erased_at is not None,
            "target_name": target.name if target else "",
            "lists": [
                {
                    "slug": item.slug,
                    "name": item.name,
                    "description": item.description,
                    "status": status,
                    "topics": leaving.list_topics(session, item.id or 0)
                    if status == SubscriptionStatus.confirmed
                    else [],
                    "chosen": chosen.get(item.id or 0) or [],
                }
                for item, status in statuses
                if status is not None or item.id == list_id
            ],
        }


@dataclass
class Outcome:
    """What leaving or changing preferences did, for the page that says so."""

    unsubscribed: bool
    left: list[str] = field(default_factory=list)
    """Slugs (leaving) or names (preferences) of the lists left."""
    requested: list[str] = field(default_factory=list)
    """Names of the lists a confirmation mail was queued for."""
    topics_changed: list[str] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return {
            "unsubscribed": self.unsubscribed,
            "left": self.left,
            "requested": self.requested,
            "topics_changed": self.topics_changed,
        }


def leave(
    desk: Desk, subscriber_id: int, list_ids: set[int] | None, context: ledger.ConsentContext
) -> Outcome:
    """Unsubscribe from `list_ids` (every list when None) at once; idempotent."""
    with session_scope(desk.engine) as session:
        left = leaving.unsubscribe(session, subscriber_id, list_ids, context, desk.clock.now())
    return Outcome(unsubscribed=True, left=left)


def change_preferences(
    desk: Desk,
    subscriber_id: int,
    wanted: set[str],
    topic_choices: dict[str, set[str]],
    context: ledger.ConsentContext,
) -> Outcome:
    """Leave the lists not `wanted` now; wanted lists not yet confirmed get a confirmation
    mail; topics chosen for a confirmed list (`topic_choices` by list slug) are kept."""
    now = desk.clock.now()
    with session_scope(desk.engine) as session:
        subscriber_id = leaving.surviving_id(session, subscriber_id)
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None or subscriber.erased_at is not None:
            raise NotFound("subscriber")
        lists = {item.slug: item for item in session.scalars(select(MailingList))}
        unknown = wanted - lists.keys()
        if unknown:
            raise Invalid(
                "lists", N_("unknown list %(lists)s"), params={"lists": ", ".join(sorted(unknown))}
            )
        statuses = {
            item.slug: status for item, status in leaving.list_statuses(session, subscriber_id)
        }
        active = (SubscriptionStatus.confirmed, SubscriptionStatus.pending)
        to_leave = {
            lists[slug].id or 0
            for slug, status in statuses.items()
            if slug not in wanted and status in active
        }
        left = (
            leaving.unsubscribe(session, subscriber_id, to_leave, context, now) if to_leave else []
        )
        confirmed = [s for s in sorted(wanted) if statuses.get(s) == SubscriptionStatus.confirmed]
        topics_changed = [
            slug
            for slug in confirmed
            if slug in topic_choices
            and leaving.set_topics(
                session, subscriber_id, lists[slug].id or 0, topic_choices[slug], context, now
            )
        ]
        to_request = [lists[slug] for slug in sorted(wanted) if slug not in confirmed]
        if to_request:
            signup.request(
                session,
                email=subscriber.email,
                name=subscriber.name,
                lists=to_request,
                form_id=None,
                context=ledger.ConsentContext(
                    form="preferences",
                    consent_text=signup.PREFERENCES_WORDING,
                    ip=context.ip,
                    user_agent=context.user_agent,
                ),
                settings=desk.settings.signup,
                now=now,
            )
    return Outcome(
        unsubscribed=False,
        left=[lists[slug].name for slug in left],
        requested=[item.name for item in to_request],
        topics_changed=[lists[slug].name for slug in topics_changed],
    )
