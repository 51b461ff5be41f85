"""Reading one inbound email into the bounce and complaint reports it carries.

Understood: RFC 3464 delivery status notifications (a message/delivery-status part), RFC
5965 feedback reports (a message/feedback-report part) and the plain-text notices some
servers still send instead of a DSN (read with flufl.bounce and the status in the text).
Which message a report is about comes only from our signed VERP address: the address the
notice was sent to (the SMTP envelope, or the mailbox's delivery headers) or, for a
feedback report, the original message's Return-Path. Addresses the body names are never
trusted. Automatic replies and anything else give no report.
"""

from __future__ import annotations

import email
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser, HeaderParser
from email.utils import getaddresses
from enum import StrEnum

from flufl.bounce import all_failures

from mailer.bounces.classify import find_status
from mailer.bounces.handling import Report
from mailer.bounces.verp import outbox_id_in
from mailer.tokens import Signer

log = logging.getLogger(__name__)
# flufl.bounce names each detector it runs at info level: noise for every report.
logging.getLogger("flufl.bounce").setLevel(logging.WARNING)

DELIVERY_HEADERS = ("Delivered-To", "X-Original-To", "To", "Envelope-To")
"""Where a mailbox shows the address a message was delivered to, most trusted first."""

ORIGINAL_COPY = re.compile(
    r"^\s*(-{2,}.*(original message|copy of the message|below this line|message follows|"
    r"original headers|forwarded message|undelivered message).*|return-path:.*|received:.*)$",
    re.IGNORECASE | re.MULTILINE,
)
"""Where a plain-text notice starts quoting the message it is about (not its own words)."""

BOUNCE_SENDERS = {"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"}
BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (status|fail|has failed|notification|problem)|returned mail|"
    r"failure notice|mail delivery (failed|system|subsystem)|non.?delivery|not delivered",
    re.IGNORECASE,
)
AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|vacation|"
    r"abwesenheit|absence)",
    re.IGNORECASE,
)
TAGS = re.compile(r"<[^>]*>")
SPACES = re.compile(r"\s+")


class InboundKind(StrEnum):
    dsn = "dsn"
    """An RFC 3464 delivery status notification."""
    notice = "notice"
    """A plain-text bounce without a delivery-status part (Exim, qmail, Yahoo, ...)."""
    arf = "arf"
    """An RFC 5965 feedback report (a complaint, or a not-spam and the like)."""
    auto_reply = "auto-reply"
    unsubscribe = "unsubscribe"
    """Mail to the List-Unsubscribe mailbox (not a report: see `intake`)."""
    other = "other"
    """Mail that is none of the above."""
    unreadable = "unreadable"


@dataclass(frozen=True)
class Reading:
    """What one inbound email says: its kind and its reports, each about one outbox row."""

    kind: InboundKind
    reports: list[Report] = field(default_factory=list)
    reason: str = ""
    """Why there is no report, when there is none."""


def read(data: bytes, signer: Signer, envelope_recipients: Sequence[str] = ()) -> Reading:
    """The reports in one inbound email. `envelope_recipients` are the SMTP RCPT TO
    addresses when it came by SMTP; without them the delivery headers name them."""
    try:
        message = BytesParser(policy=policy.default).parsebytes(data)
        assert isinstance(message, EmailMessage)
        return _read(message, data, signer, envelope_recipients)
    except Exception as exc:  # hostile input: any parse failure means "unreadable"
        return Reading(InboundKind.unreadable, reason=f"cannot be read ({type(exc).__name__})")


def _read(
    message: EmailMessage, data: bytes, signer: Signer, envelope_recipients: Sequence[str]
) -> Reading:
    parts = {part.get_content_type(): part for part in reversed(list(message.walk()))}
    if "message/feedback-report" in parts:
        return _feedback_report(message, parts, signer, envelope_recipients)
    if "message/delivery-status" in parts:
        dsn = _delivery_status(
            message, parts["message/delivery-status"], signer, envelope_recipients
        )
        if dsn is not None:
            return dsn
    notice = _plain_notice(message, data, signer, envelope_recipients)
    if notice is not None:
        return notice
    if _is_auto_reply(message):
        return Reading(InboundKind.auto_reply, reason="an automatic reply")
    return Reading(InboundKind.other, reason="not a bounce or complaint report")


# ---- where the report came back to ---------------------------------------------------


def _outbox_ids(signer: Signer, addresses: Iterable[str]) -> list[int]:
    """The outbox rows that these addresses' valid VERP tags name, without repeats."""
    found: list[int] = []
    for address in addresses:
        outbox_id = outbox_id_in(address, signer)
        if outbox_id is not None and outbox_id not in found:
            found.append(outbox_id)
    return found


def _delivered_to(
    message: Message, signer: Signer, envelope_recipients: Sequence[str]
) -> list[int]:
    """The rows named by the address the report was delivered to: every envelope
    recipient's, or the first delivery header that holds a valid tag."""
    if envelope_recipients:
        return _outbox_ids(signer, envelope_recipients)
    for name in DELIVERY_HEADERS:
        values = [str(value) for value in message.get_all(name, [])]
        found = _outbox_ids(signer, (address for _, address in getaddresses(values)))
        if found:
            return found[:1]
    return []


# ---- RFC 3464 ------------------------------------------------------------------------


def _delivery_status(
    message: EmailMessage, status_part: Message, signer: Signer, envelope_recipients: Sequence[str]
) -> Reading | None:
    """Reports from each per-recipient block, or None when the part has no such block."""
    blocks = _field_blocks(status_part)
    per_recipient = [
        block
        for block in blocks
        if block.get("Action") or block.get("Status") or block.get("Final-Recipient")
    ]
    if not per_recipient:
        return None
    outbox_ids = _delivered_to(message, signer, envelope_recipients)
    if not outbox_ids:
        return Reading(InboundKind.dsn, reason="not sent to a bounce address with a valid tag")
    reports: list[Report] = []
    for block in per_recipient:
        diagnostic = _diagnostic(_field(block, "Diagnostic-Code"))
        status = find_status(_field(block, "Status")) or find_status(diagnostic)
        action = _field(block, "Action").lower() or "failed"
        reports.extend(
            Report(
                source="dsn",
                status=status,
                action=action,
                detail=diagnostic or _field(block, "Status"),
                outbox_id=outbox_id,
            )
            for outbox_id in outbox_ids
        )
    return Reading(InboundKind.dsn, reports)


def _diagnostic(value: str) -> str:
    """A Diagnostic-Code without its type ("smtp; 550 ..." -> "550 ...")."""
    kind, semicolon, text = value.partition(";")
    return text.strip() if semicolon and " " not in kind.strip() else value.strip()


# ---- RFC 5965 ------------------------------------------------------------------------


def _feedback_report(
    message: EmailMessage,
    parts: dict[str, Message],
    signer: Signer,
    envelope_recipients: Sequence[str],
) -> Reading:
    """A complaint (or another kind of feedback) about the message it encloses."""
    fields: dict[str, str] = {}
    for block in _field_blocks(parts["message/feedback-report"]):
        for name in ("Feedback-Type", "User-Agent", "Original-Mail-From"):
            fields.setdefault(name, _field(block, name))
    feedback_type = fields.get("Feedback-Type", "").lower()
    if not feedback_type:
        return Reading(InboundKind.arf, reason="a feedback report without a Feedback-Type")
    original = _original_headers(parts)
    # The original's Return-Path is the VERP address it was sent from; the report's own
    # Original-Mail-From says the same; only then the address the report came to.
    candidates = [str(original.get("Return-Path", ""))] if original is not None else []
    candidates.append(fields.get("Original-Mail-From", ""))
    outbox_ids = _outbox_ids(signer, (address for _, address in getaddresses(candidates)))[:1]
    if not outbox_ids:
        outbox_ids = _delivered_to(message, signer, envelope_recipients)
    if not outbox_ids:
        return Reading(InboundKind.arf, reason="the reported message has no valid bounce tag")
    agent = fields.get("User-Agent", "") or "an unnamed reporter"
    detail = f"feedback type {feedback_type} reported by {agent}"[:300]
    reports = [
        Report(
            source="arf", action=feedback_type, complaint=True, detail=detail, outbox_id=outbox_id
        )
        for outbox_id in outbox_ids
    ]
    return Reading(InboundKind.arf, reports)


def _original_headers(parts: dict[str, Message]) -> Message | None:
    """The headers of the message a feedback report is about, whole or headers only."""
    enclosed = parts.get("message/rfc822")
    if enclosed is not None:
        payload = enclosed.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
    headers_only = parts.get("text/rfc822-headers")
    if headers_only is not None:
        return HeaderParser(policy=policy.default).parsestr(_text(headers_only))
    return None


# ---- plain-text notices --------------------------------------------------------------


def _plain_notice(
    message: EmailMessage, data: bytes, signer: Signer, envelope_recipients: Sequence[str]
) -> Reading | None:
    """A report from a bounce without a delivery-status part, or None if it is not one."""
    try:
        # flufl.bounce reads the classic Message API.
        temporary, permanent = all_failures(email.message_from_bytes(data))
    except Exception:  # its heuristics must not stop the other checks
        temporary, permanent = frozenset(), frozenset()
    explanation = _explanation(message)
    status = find_status(explanation)
    if not (temporary or permanent):
        if not (status and status[0] in "45" and _looks_like_bounce(message)):
            return None
        failed = status.startswith("5")
    else:
        failed = bool(permanent)
    outbox_ids = _delivered_to(message, signer, envelope_recipients)
    if not outbox_ids:
        return Reading(InboundKind.notice, reason="not sent to a bounce address with a valid tag")
    reports = [
        Report(
            source="dsn",
            status=status,
            action="failed" if failed else "delayed",
            detail=explanation[:1000],
            outbox_id=outbox_id,
        )
        for outbox_id in outbox_ids
    ]
    return Reading(InboundKind.notice, reports)


def _explanation(message: EmailMessage) -> str:
    """The notice's own words: its first text part, up to where it quotes the original."""
    body = message.get_body(preferencelist=("plain", "html"))
    if body is None:
        return ""
    text = _text(body)
    if body.get_content_type() == "text/html":
        text = TAGS.sub(" ", text)
    cut = ORIGINAL_COPY.search(text)
    if cut is not None:
        text = text[: cut.start()]
    return SPACES.sub(" ", text).strip()[:4000]


def _looks_like_bounce(message: Message) -> bool:
    sender = getaddresses([str(message.get("From", ""))])
    local = sender[0][1].partition("@")[0].lower() if sender else ""
    return local in BOUNCE_SENDERS or bool(BOUNCE_SUBJECT.search(str(message.get("Subject", ""))))


def _is_auto_reply(message: Message) -> bool:
    """A vacation or other automatic answer (RFC 3834 and the common older markers)."""
    auto_submitted = str(message.get("Auto-Submitted", "")).strip().lower()
    if auto_submitted and auto_submitted != "no":
        return True
    if message.get("X-Autoreply") or message.get("X-Autorespond"):
        return True
    if str(message.get("Precedence", "")).strip().lower() == "auto_reply":
        return True
    return bool(AUTO_REPLY_SUBJECT.search(str(message.get("Subject", ""))))


# ---- small readers -------------------------------------------------------------------


def _field_blocks(part: Message) -> list[Message]:
    """The header blocks of a report part (parsed by the email package, or by hand when the
    part came encoded)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    text = _text(part)
    parser = HeaderParser(policy=policy.default)
    return [parser.parsestr(chunk) for chunk in re.split(r"\r?\n\s*\r?\n", text) if chunk.strip()]


def _field(block: Message, name: str) -> str:
    return SPACES.sub(" ", str(block.get(name, "") or "")).strip()


def _text(part: Message) -> str:
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        payload = part.get_payload()
        return payload if isinstance(payload, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return raw.decode(charset, errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")
