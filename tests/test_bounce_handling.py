"""What a bounce or complaint does to the reader: the RFC 3463 classification and its
effects (suppression, soft counting in a window, policy alerts, complaints)."""

from __future__ import annotations

import logging

import pytest
from sqlmodel import col, select

from mailer.bounces.classify import classify, find_status
from mailer.bounces.handling import Report, handle
from mailer.bounces.verp import outbox_id_in
from mailer.db import session_scope
from mailer.delivery.compose import Composer
from mailer.models import (
    BounceEvent,
    BounceKind,
    ConsentEvent,
    Subscriber,
    Subscription,
    Suppression,
)
from mailer.services import Services
from tests.bounces import reader_with_message as message_to

pytestmark = pytest.mark.both_databases
"""Suppression inserts (ON CONFLICT) and the soft-bounce count (FILTER): both databases."""


@pytest.mark.parametrize(
    ("status", "action", "detail", "kind"),
    [
        ("5.1.1", "failed", "550 5.1.1 user unknown", BounceKind.hard),
        ("5.1.10", "failed", "RecipientNotFound", BounceKind.hard),
        ("5.2.2", "failed", "mailbox full", BounceKind.soft),
        ("4.4.1", "delayed", "connection timed out", BounceKind.soft),
        ("5.1.1", "delayed", "still trying", BounceKind.soft),
        ("4.7.0", "failed", "temporarily deferred", BounceKind.soft),
        ("5.7.26", "failed", "unauthenticated email is not accepted", BounceKind.policy),
        ("5.7.515", "failed", "does not meet the required authentication level", BounceKind.policy),
        ("5.1.8", "failed", "bad sender's system address", BounceKind.policy),
        ("5.6.0", "failed", "content refused", BounceKind.policy),
        ("", "failed", "550 No such user here", BounceKind.hard),
        ("", "failed", "554 transaction failed", BounceKind.soft),
        ("5.0.0", "failed", "550 sorry", BounceKind.soft),
        ("not-a-status", "failed", "", BounceKind.soft),
        ("2.0.0", "delivered", "ok", None),
        ("", "relayed", "", None),
    ],
)
def test_statuses_are_classified_by_rfc_3463(
    status: str, action: str, detail: str, kind: BounceKind | None
) -> None:
    assert classify(status, action, detail) == kind


def test_the_status_is_found_in_a_diagnostic() -> None:
    assert find_status("smtp; 550 5.1.1 <x@example.com>... User unknown") == "5.1.1"
    assert find_status("no status here") == ""


def _handle(services: Services, report: Report):  # type: ignore[no-untyped-def]
    with session_scope(services.engine) as session:
        return handle(session, report, services.settings.bounces, services.clock.now())


def _suppression(services: Services, email: str) -> str | None:
    with session_scope(services.engine) as session:
        subscriber = session.exec(select(Subscriber).where(col(Subscriber.email) == email)).one()
        found = session.exec(
            select(Suppression).where(col(Suppression.subscriber_id) == subscriber.id)
        ).first()
        return found.reason if found else None


def test_a_hard_bounce_suppresses_at_once(services: Services) -> None:
    outbox_id = message_to(services, "gone@example.com")
    outcome = _handle(services, Report("dsn", "5.1.1", "failed", outbox_id=outbox_id))
    assert outcome.kind == BounceKind.hard and outcome.suppressed
    assert _suppression(services, "gone@example.com") == "hard-bounce"


def test_soft_bounces_suppress_only_after_the_limit_of_different_messages_in_the_window(
    services: Services,
) -> None:
    limit = services.settings.bounces.soft_limit
    first = message_to(services, "full@example.com")
    for _ in range(limit + 1):  # the same message reported again and again counts once
        assert not _handle(services, Report("dsn", "5.2.2", outbox_id=first)).suppressed
    for _ in range(limit - 2):
        assert not _handle(
            services,
            Report(
                "dsn",
                "4.2.2",
                "delayed",
                outbox_id=message_to(services, "full@example.com"),
            ),
        ).suppressed
    assert _suppression(services, "full@example.com") is None
    last = _handle(
        services,
        Report("dsn", "5.2.2", outbox_id=message_to(services, "full@example.com")),
    )
    assert last.suppressed and _suppression(services, "full@example.com") == "soft-bounce"


def test_soft_bounces_older_than_the_window_are_forgotten(services: Services) -> None:
    limit = services.settings.bounces.soft_limit
    for _ in range(limit - 1):
        _handle(
            services,
            Report("smtp", "4.2.2", outbox_id=message_to(services, "flaky@example.com")),
        )
    services.clock.advance(days=services.settings.bounces.soft_window_days + 1)  # type: ignore[attr-defined]
    outcome = _handle(
        services,
        Report("smtp", "4.2.2", outbox_id=message_to(services, "flaky@example.com")),
    )
    assert not outcome.suppressed
    assert _suppression(services, "flaky@example.com") is None


def test_a_policy_rejection_alerts_the_operator_and_keeps_the_reader(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    outbox_id = message_to(services, "kept@example.com")
    with caplog.at_level(logging.ERROR, logger="mailer"):
        outcome = _handle(
            services,
            Report(
                "dsn",
                "5.7.26",
                detail="550 5.7.26 <kept@example.com> unauthenticated",
                outbox_id=outbox_id,
            ),
        )
    assert outcome.kind == BounceKind.policy and not outcome.suppressed
    assert _suppression(services, "kept@example.com") is None
    [alert] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "5.7.26" in alert.getMessage() and "needs attention" in alert.getMessage()
    assert "kept@example.com" not in alert.getMessage()


def test_an_abuse_complaint_unsubscribes_with_a_consent_event_and_suppresses(
    services: Services,
) -> None:
    outbox_id = message_to(services, "angry@example.com")
    outcome = _handle(services, Report("arf", action="abuse", complaint=True, outbox_id=outbox_id))
    assert outcome.kind == BounceKind.complaint and outcome.unsubscribed == ["news"]
    assert _suppression(services, "angry@example.com") == "complaint"
    with session_scope(services.engine) as session:
        subscriber = session.exec(
            select(Subscriber).where(col(Subscriber.email) == "angry@example.com")
        ).one()
        [subscription] = session.exec(
            select(Subscription).where(col(Subscription.subscriber_id) == subscriber.id)
        )
        assert subscription.status == "unsubscribed"
        [event] = session.exec(
            select(ConsentEvent).where(col(ConsentEvent.subscriber_id) == subscriber.id)
        )
        assert event.action == "unsubscribed" and "complaint" in event.consent_text


def test_not_spam_and_reports_about_no_message_of_ours_change_nothing(services: Services) -> None:
    outbox_id = message_to(services, "calm@example.com")
    assert (
        _handle(
            services, Report("arf", action="not-spam", complaint=True, outbox_id=outbox_id)
        ).kind
        is None
    )
    assert _handle(services, Report("dsn", "5.1.1", outbox_id=outbox_id + 1000)).kind is None
    assert _handle(services, Report("dsn", "5.1.1")).kind is None
    with session_scope(services.engine) as session:
        assert session.exec(select(BounceEvent)).all() == []
        assert session.exec(select(Suppression)).all() == []


def test_a_bounce_address_with_a_bad_tag_names_no_message(services: Services) -> None:
    composer = Composer(services.settings, services.renderer, services.signer)
    good = composer.return_path(41)
    assert outbox_id_in(good, services.signer) == 41
    assert outbox_id_in(f"<{good.upper()}>", services.signer) == 41
    local, _, domain = good.partition("@")
    assert (
        outbox_id_in(
            local[:-1] + ("a" if local[-1] != "a" else "b") + "@" + domain, services.signer
        )
        is None
    )
    assert outbox_id_in(good.replace("+", "-", 1), services.signer) is None
    assert outbox_id_in("bounces@example.com", services.signer) is None
