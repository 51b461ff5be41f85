"""MIME messages: multipart/alternative (text first, HTML last) with safe headers."""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from mailer.delivery.render import RenderedMail

_POLICY = SMTP.clone(max_line_length=78)


def build(
    *,
    from_name: str,
    from_address: str,
    to_address: str,
    mail: RenderedMail,
    now: datetime,
    msgid_domain: str,
    extra_headers: dict[str, str] | None = None,
    raw_headers: list[tuple[str, list[str]]] | None = None,
) -> bytes:
    """The wire bytes of one message. The header policy refuses CR/LF in any value.

    `raw_headers` are ASCII values written as they are, one item per folded line (the
    policy would encode a long URL as RFC 2047 words, which mail clients do not follow).
    """
    message = EmailMessage(policy=_POLICY)
    local, _, domain = from_address.rpartition("@")
    message["From"] = Address(display_name=from_name, username=local, domain=domain)
    message["To"] = to_address
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=msgid_domain)
    message["MIME-Version"] = "1.0"
    for name, value in (extra_headers or {}).items():
        message[name] = value
    message.set_content(mail.text, cte="quoted-printable")
    message.add_alternative(mail.html, subtype="html", cte="quoted-printable")
    return raw_header_lines(raw_headers or []) + message.as_bytes()


def raw_header_lines(headers: list[tuple[str, list[str]]]) -> bytes:
    """`Name: item1,\r\n item2\r\n` for each header; refuses anything but printable ASCII."""
    lines = []
    for name, items in headers:
        for text in (name, *items):
            if not text.isascii() or not text.isprintable():
                raise ValueError(f"unsafe header value for {name}")
        lines.append(f"{name}: " + ",\r\n ".join(items) + "\r\n")
    return "".join(lines).encode("ascii")
