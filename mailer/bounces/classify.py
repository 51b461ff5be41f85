"""What a delivery status means for the reader, by RFC 3463 (and RFC 3464's Action).

One classifier for every channel: replies in the SMTP dialogue, DSNs by mail and
providers' notifications. The outcome is a `BounceKind`, or None when the report is not a
failure at all (delivered, relayed, expanded).
"""

from __future__ import annotations

import re

from mailer.models import BounceKind

STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")

HARD = {"5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10"}
"""The address is gone: no such mailbox or domain, bad syntax, mailbox moved, null MX."""
SENDERS_PROBLEM_SUBJECTS = {"5", "6", "7"}
"""X.5 protocol, X.6 content, X.7 security or policy: about the sender's mail, not the
reader's address."""
SENDERS_ADDRESS = {"5.1.7", "5.1.8"}
"""Bad syntax or system of the sender's own address."""
NOT_FAILURES = {"delivered", "relayed", "expanded"}

# Replies without an enhanced status that still plainly say the mailbox does not exist.
UNKNOWN_MAILBOX = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient)|mailbox (does not|doesn't) "
    r"exist|recipient address rejected: (user unknown|unknown)|invalid recipient|"
    r"address (does not|doesn't) exist",
    re.IGNORECASE,
)


def find_status(text: str) -> str:
    """The first RFC 3463 status in a text ("5.1.1"), or ""."""
    match = STATUS.search(text)
    return ".".join(match.groups()) if match else ""


def classify(status: str, action: str = "failed", detail: str = "") -> BounceKind | None:
    """The kind of a failure with this status ("5.1.1"), DSN action and diagnostic text.

    - `delayed`, any 4.x.x, and 5.2.x (mailbox full or disabled) are soft;
    - 5.1.1 and 5.1.10 (and the other "address is gone" codes) are hard;
    - 5.7.x, 5.6.x, 5.5.x and problems with the sender's own address are policy: the
      sender's setup, not the reader;
    - any other permanent failure is hard only when its text says the mailbox does not
      exist, soft otherwise: suppressing a live reader by mistake loses them for good.
    """
    action = action.strip().lower()
    if action in NOT_FAILURES:
        return None
    if action == "delayed":
        return BounceKind.soft
    match = STATUS.fullmatch(status.strip())
    if match is None:
        return BounceKind.hard if UNKNOWN_MAILBOX.search(detail) else BounceKind.soft
    klass, subject, _ = match.groups()
    status = match.group(0)
    if klass == "2":
        return None
    if klass == "4":
        return BounceKind.soft
    if status in HARD:
        return BounceKind.hard
    if status in SENDERS_ADDRESS or subject in SENDERS_PROBLEM_SUBJECTS:
        return BounceKind.policy
    if subject in ("0", "1") and UNKNOWN_MAILBOX.search(detail):
        return BounceKind.hard
    return BounceKind.soft
