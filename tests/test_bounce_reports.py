"""Reading inbound bounce and complaint reports: a corpus of DSNs, plain-text notices and
ARF reports in the formats Postfix, Exim, Exchange, Gmail, Outlook and Yahoo produce
(tests/data/bounces/), each classified and acted on for the reader its VERP address
names, never the address its body claims."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest
from sqlmodel import select

from mailer.bounces.reports import InboundKind, read
from mailer.db import session_scope
from mailer.models import (
    BounceEvent,
    BounceKind,
)
from mailer.services import Services
from tests.bounces import READER, SAMPLES, intake_for, reader_state, reader_with_message, sample


@dataclass(frozen=True)
class Expected:
    kind: InboundKind
    reports: list[tuple[str, str]]
    """(status, action) of each report read."""
    bounce: BounceKind | None = None
    """What handling made of it (None: ignored)."""
    suppression: str | None = None
    """The reader's suppression reason afterwards (None: still mailed)."""


CORPUS = {
    "postfix-5.1.1-user-unknown.eml": Expected(
        InboundKind.dsn, [("5.1.1", "failed")], BounceKind.hard, "hard-bounce"
    ),
    "postfix-4.4.1-delayed.eml": Expected(InboundKind.dsn, [("4.4.1", "delayed")], BounceKind.soft),
    "exim-550-user-unknown.eml": Expected(
        InboundKind.notice, [("5.1.1", "failed")], BounceKind.hard, "hard-bounce"
    ),
    "exchange-5.1.10-recipient-not-found.eml": Expected(
        InboundKind.dsn, [("5.1.10", "failed")], BounceKind.hard, "hard-bounce"
    ),
    "gmail-5.2.2-mailbox-full.eml": Expected(
        InboundKind.dsn, [("5.2.2", "failed")], BounceKind.soft
    ),
    "gmail-5.7.26-unauthenticated.eml": Expected(
        InboundKind.dsn, [("5.7.26", "failed")], BounceKind.policy
    ),
    "outlook-5.7.515-policy.eml": Expected(
        InboundKind.dsn, [("5.7.515", "failed")], BounceKind.policy
    ),
    "yahoo-5.1.1-user-unknown.eml": Expected(
        InboundKind.notice, [("5.1.1", "failed")], BounceKind.hard, "hard-bounce"
    ),
    "yahoo-4.7.0-deferred.eml": Expected(InboundKind.dsn, [("4.7.0", "delayed")], BounceKind.soft),
    "arf-yahoo-abuse.eml": Expected(
        InboundKind.arf, [("", "abuse")], BounceKind.complaint, "complaint"
    ),
    "arf-fbl-abuse-headers.eml": Expected(
        InboundKind.arf, [("", "abuse")], BounceKind.complaint, "complaint"
    ),
    "arf-not-spam.eml": Expected(InboundKind.arf, [("", "not-spam")]),
    "vacation-auto-reply.eml": Expected(InboundKind.auto_reply, []),
    "dsn-forged-tag.eml": Expected(InboundKind.dsn, []),
}


def test_every_sample_in_the_corpus_has_an_expectation() -> None:
    assert set(CORPUS) == {path.name for path in SAMPLES.glob("*.eml")}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_sample_is_classified_and_acts_on_the_reader_its_bounce_address_names(
    name: str, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    expected = CORPUS[name]
    outbox_id = reader_with_message(services)
    verp = services.sender.composer.return_path(outbox_id)

    handled = intake_for(services).take(sample(name, verp))

    assert handled.reading.kind == expected.kind, handled.reading.reason
    assert [(r.status, r.action) for r in handled.reading.reports] == expected.reports
    assert all(r.outbox_id == outbox_id for r in handled.reading.reports)
    assert [o.kind for o in handled.outcomes] == [expected.bounce] * len(expected.reports)
    reason, status, consent_texts = reader_state(services)
    assert reason == expected.suppression
    if expected.bounce == BounceKind.complaint:
        assert status == "unsubscribed"
        assert "complaint" in consent_texts[-1]
    else:
        assert status == "confirmed"
    with session_scope(services.engine) as session:
        kinds = session.exec(select(BounceEvent.kind)).all()
    assert kinds == ([expected.bounce.value] if expected.bounce else [])
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("mailer"))
    assert READER not in ours, "no address in the log"
    if expected.bounce == BounceKind.policy:
        assert any(
            r.levelno == logging.ERROR and expected.reports[0][0] in r.getMessage()
            for r in caplog.records
        ), "the operator is alerted"


def test_the_reader_is_the_one_the_bounce_address_names_not_the_one_the_body_names(
    services: Services,
) -> None:
    bounced = reader_with_message(services, "named-by-verp@example.com")
    reader_with_message(services, "named-in-body@example.com")
    verp = services.sender.composer.return_path(bounced)
    data = sample("postfix-5.1.1-user-unknown.eml", verp, recipient="named-in-body@example.com")

    intake_for(services).take(data)

    assert reader_state(services, "named-by-verp@example.com")[0] == "hard-bounce"
    assert reader_state(services, "named-in-body@example.com")[0] is None


def test_a_bounce_to_a_tampered_tag_changes_nothing(services: Services) -> None:
    outbox_id = reader_with_message(services)
    verp = services.sender.composer.return_path(outbox_id)
    local, _, domain = verp.partition("@")
    tampered = f"{local[:-1]}{'a' if local[-1] != 'a' else 'b'}@{domain}"
    number, _, mac = local.partition("+")[2].partition("-")
    another_row = int(number, 36) + 1
    forged_number = f"bounces+{another_row:x}-{mac}@{domain}"

    for address in (tampered, forged_number, "bounces@example.org"):
        handled = intake_for(services).take(sample("postfix-5.1.1-user-unknown.eml", address))
        assert handled.reading.reports == [] and "valid tag" in handled.reading.reason

    assert reader_state(services)[0] is None
    with session_scope(services.engine) as session:
        assert session.exec(select(BounceEvent)).all() == []


@pytest.mark.both_databases
def test_soft_bounces_of_different_messages_suppress_the_reader_at_the_limit(
    services: Services,
) -> None:
    limit = services.settings.bounces.soft_limit
    for count in range(1, limit + 1):
        verp = services.sender.composer.return_path(reader_with_message(services))
        intake_for(services).take(sample("gmail-5.2.2-mailbox-full.eml", verp))
        intake_for(services).take(sample("gmail-5.2.2-mailbox-full.eml", verp))  # repeated
        expected = "soft-bounce" if count == limit else None
        assert reader_state(services)[0] == expected, f"after {count} messages"


def test_the_envelope_recipient_names_the_message_when_it_came_by_smtp(
    services: Services,
) -> None:
    outbox_id = reader_with_message(services)
    verp = services.sender.composer.return_path(outbox_id)
    data = sample("postfix-5.1.1-user-unknown.eml", "bounces@example.org")

    reading = read(data, services.signer, envelope_recipients=[verp])

    assert [r.outbox_id for r in reading.reports] == [outbox_id]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff\xfe garbage \x80\x81",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n--x\n",
        b"Content-Type: multipart/report; boundary=x\n\n--x\nContent-Type: "
        b"message/delivery-status\nContent-Transfer-Encoding: base64\n\n!!!notbase64\n--x--\n",
        b"From: someone@example.net\nSubject: hello\n\nJust a note, nothing bounced.\n",
    ],
)
def test_mail_that_is_no_report_gives_none_and_no_error(data: bytes, services: Services) -> None:
    handled = intake_for(services).take(data)
    assert handled.reading.reports == []
    assert handled.reading.kind in (InboundKind.other, InboundKind.unreadable, InboundKind.dsn)
