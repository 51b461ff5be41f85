"""Addresses: the checked form mail goes to, the canonical form that identifies a reader,
and the checks for values that may reach a mail header.

A reader's identity (uniqueness, rate limits, the confirmation window, suppression,
search) is `address_key`: the whole address lower-cased with its domain in IDNA (ASCII)
form. Mail goes to the address as the reader typed it (`normalize_email`).
"""

from __future__ import annotations

import hashlib
import re
from email.errors import HeaderParseError
from email.header import decode_header

import idna
from email_validator import EmailNotValidError, validate_email

from mailer.errors import Invalid

MAX_ADDRESS_LENGTH = 254
"""RFC 5321 limits, in octets: the whole address (a path of 256 less its brackets), ..."""
MAX_LOCAL_LENGTH = 64
"""... the part before the @, ..."""
MAX_DOMAIN_LENGTH = 255
"""... and the domain (in its ASCII form; each label at most 63)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")
_ENCODED_WORD = re.compile(r"=\?[^?]+\?[bBqQ]\?[^?]*\?=")


def check_header_safe(field: str, value: str) -> str:
    """Refuse control characters, raw or hidden in an RFC 2047 encoded word."""
    if _CONTROL.search(value):
        raise Invalid(field, "must not contain line breaks or control characters")
    if _ENCODED_WORD.search(value):
        try:
            decoded = "".join(
                part.decode(charset or "ascii", "replace") if isinstance(part, bytes) else part
                for part, charset in decode_header(value)
            )
        except (ValueError, LookupError, HeaderParseError) as exc:
            raise Invalid(field, "contains a malformed encoded word") from exc
        if _CONTROL.search(decoded):
            raise Invalid(field, "must not contain encoded line breaks")
    return value


def normalize_email(raw: str) -> str:
    """The address trimmed, checked (RFC 5321 limits, no quoted local part), with its
    domain lower-cased: the form mail goes to."""
    value = raw.strip(" \t")
    check_header_safe("email", value)
    if not value:
        raise Invalid("email", "is required")
    if len(value) > MAX_ADDRESS_LENGTH:
        raise Invalid("email", f"is too long (at most {MAX_ADDRESS_LENGTH} characters)")
    try:
        checked = validate_email(
            value, check_deliverability=False, allow_quoted_local=False, strict=True
        )
    except EmailNotValidError as exc:
        raise Invalid("email", str(exc)) from exc
    local, _, domain = checked.normalized.rpartition("@")
    _check_octets(local, checked.ascii_domain)
    return f"{local}@{domain.lower()}"


def _check_octets(local: str, ascii_domain: str) -> None:
    """RFC 5321 counts octets: a non-ASCII local part takes two to four per character."""
    local_octets = len(local.encode())
    if local_octets > MAX_LOCAL_LENGTH:
        raise Invalid(
            "email",
            f"The part before the @-sign is too long ({local_octets} bytes; "
            f"at most {MAX_LOCAL_LENGTH}).",
        )
    if len(ascii_domain) > MAX_DOMAIN_LENGTH:
        raise Invalid(
            "email", f"The part after the @-sign is too long (at most {MAX_DOMAIN_LENGTH} bytes)."
        )
    total = local_octets + 1 + len(ascii_domain)
    if total > MAX_ADDRESS_LENGTH:
        raise Invalid(
            "email", f"The address is too long ({total} bytes; at most {MAX_ADDRESS_LENGTH})."
        )


def ascii_domain(domain: str) -> str:
    """The domain in IDNA (punycode) form, lower-cased; as given when it cannot be."""
    if domain.isascii():
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii").lower()
    except idna.IDNAError:
        return domain.lower()


def wire_address(email: str) -> str:
    """The address as it goes out, in the envelope and the headers: with an ASCII local
    part the domain in IDNA form, so no SMTPUTF8 is needed; with a non-ASCII local part
    as it is (RFC 6531 envelope, RFC 6532 header), never RFC 2047-encoded."""
    local, at, domain = email.rpartition("@")
    if not at or not local.isascii():
        return email
    return f"{local}@{ascii_domain(domain)}"


def address_key(email: str) -> str:
    """The canonical form that identifies a reader: the whole address lower-cased, the
    domain in IDNA form. Takes an address `normalize_email` accepted (or a stored one)."""
    local, _, domain = email.strip(" \t").rpartition("@")
    return f"{local.lower()}@{ascii_domain(domain)}"


def canonical_email(raw: str) -> str:
    """Check a typed address and give its canonical form (`address_key`)."""
    return address_key(normalize_email(raw))


def address_digest(email: str) -> str:
    """A stable, non-reversible stand-in for an address (rate-limit keys, suppression,
    erasure), the same for every spelling of it."""
    return hashlib.sha256(address_key(email).encode()).hexdigest()
