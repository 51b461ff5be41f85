"""Address normalization and the checks for values that may reach a mail header."""

from __future__ import annotations

import hashlib
import re
from email.errors import HeaderParseError
from email.header import decode_header

from email_validator import EmailNotValidError, validate_email

from mailer.subscriptions.errors import InvalidInput

MAX_ADDRESS_LENGTH = 254
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")
_ENCODED_WORD = re.compile(r"=\?[^?]+\?[bBqQ]\?[^?]*\?=")


def check_header_safe(field: str, value: str) -> str:
    """Refuse control characters, raw or hidden in an RFC 2047 encoded word."""
    if _CONTROL.search(value):
        raise InvalidInput(field, "must not contain line breaks or control characters")
    if _ENCODED_WORD.search(value):
        try:
            decoded = "".join(
                part.decode(charset or "ascii", "replace") if isinstance(part, bytes) else part
                for part, charset in decode_header(value)
            )
        except (ValueError, LookupError, HeaderParseError) as exc:
            raise InvalidInput(field, "contains a malformed encoded word") from exc
        if _CONTROL.search(decoded):
            raise InvalidInput(field, "must not contain encoded line breaks")
    return value


def normalize_email(raw: str) -> str:
    """The address trimmed, checked, and with its domain lower-cased."""
    value = raw.strip(" \t")
    check_header_safe("email", value)
    if not value:
        raise InvalidInput("email", "is required")
    if len(value) > MAX_ADDRESS_LENGTH:
        raise InvalidInput("email", "is too long")
    try:
        checked = validate_email(value, check_deliverability=False, allow_quoted_local=False)
    except EmailNotValidError as exc:
        raise InvalidInput("email", str(exc)) from exc
    local, _, domain = checked.normalized.rpartition("@")
    return f"{local}@{domain.lower()}"


def address_digest(email: str) -> str:
    """A stable, non-reversible stand-in for an address (rate-limit keys, erasure)."""
    return hashlib.sha256(email.encode()).hexdigest()
