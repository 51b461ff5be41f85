"""MIME messages: multipart/alternative (text first, HTML last) with safe headers."""

from __future__ import annotations

import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, getaddresses, make_msgid

from mailer.delivery.render import MARKER_PATTERN, RenderedMail
from mailer.subscriptions.addresses import wire_address

_POLICY = SMTP.clone(max_line_length=78)


def header_address(value: str) -> str:
    """An address header value from the settings ("Name <a@b>" or "a@b") with each address
    in its wire form (IDNA domain)."""
    pairs = getaddresses([value])
    if not pairs or not all(address for _, address in pairs):
        return value
    return ", ".join(formataddr((name, wire_address(address))) for name, address in pairs)


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
    policy would encode a long URL as RFC 2047 words, which mail clients do not follow);
    so is `To` (see `to_header`).
    """
    message = EmailMessage(policy=_POLICY)
    local, _, domain = wire_address(from_address).rpartition("@")
    message["From"] = Address(display_name=from_name, username=local, domain=domain)
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=msgid_domain)
    message["MIME-Version"] = "1.0"
    for name, value in (extra_headers or {}).items():
        message[name] = value
    message.set_content(mail.text, cte="quoted-printable")
    message.add_alternative(mail.html, subtype="html", cte="quoted-printable")
    return raw_header_lines(raw_headers or []) + to_header(to_address) + message.as_bytes()


def to_header(to_address: str) -> bytes:
    """`To:` with the address in its wire form, written as it is: ASCII, or raw UTF-8 for a
    non-ASCII local part (RFC 6532, sent with SMTPUTF8). The email package would write
    the latter as RFC 2047 encoded words, which are not allowed in an address."""
    address = wire_address(to_address)
    if not address.isprintable() or any(c in address for c in "<>,;"):
        raise ValueError("unsafe recipient address")
    return f"To: {address}\r\n".encode()


def raw_header_lines(headers: list[tuple[str, list[str]]]) -> bytes:
    """`Name: item1,\r\n item2\r\n` for each header; refuses anything but printable ASCII."""
    lines = []
    for name, items in headers:
        for text in (name, *items):
            if not text.isascii() or not text.isprintable():
                raise ValueError(f"unsafe header value for {name}")
        lines.append(f"{name}: " + ",\r\n ".join(items) + "\r\n")
    return "".join(lines).encode("ascii")


class BulkMessageMaker:
    """Builds bulk messages without a MIME object per message.

    What is the same for every message (From, the MIME skeleton) is built once with the
    email package; per message only strings are joined and the two bodies are encoded as
    quoted-printable by binascii (C). Addresses or subjects that need more than plain
    ASCII go through `build` instead.
    """

    def __init__(
        self, from_name: str, from_address: str, msgid_domain: str, extra_headers: dict[str, str]
    ) -> None:
        skeleton = EmailMessage(policy=_POLICY)
        local, _, domain = wire_address(from_address).rpartition("@")
        skeleton["From"] = Address(display_name=from_name, username=local, domain=domain)
        for name, value in extra_headers.items():
            skeleton[name] = value
        fixed = skeleton.as_bytes().split(b"\r\n\r\n", 1)[0]
        self._fixed_headers = fixed + b"\r\nMIME-Version: 1.0\r\n"
        self._boundary = "=_mailer_" + uuid.uuid4().hex  # "=_" never occurs in QP text
        self._msgid_domain = msgid_domain
        self._from_name, self._from_address = from_name, from_address
        self._extra_headers = extra_headers

    def build(
        self,
        to_address: str,
        mail: RenderedMail,
        now: datetime,
        raw_headers: list[tuple[str, list[str]]],
    ) -> bytes:
        if not self.takes(to_address, mail.subject):
            return build(
                from_name=self._from_name,
                from_address=self._from_address,
                to_address=to_address,
                mail=mail,
                now=now,
                msgid_domain=self._msgid_domain,
                extra_headers=self._extra_headers,
                raw_headers=raw_headers,
            )
        return self._assemble(
            to_address,
            mail.subject,
            now,
            raw_headers,
            _part(self._boundary, "plain", mail.text),
            _part(self._boundary, "html", mail.html),
        )

    def takes(self, to_address: str, subject: str) -> bool:
        """Whether this fast path can write these headers (plain ASCII, not too long)."""
        return (
            _plain_header(wire_address(to_address))
            and _plain_header(subject)
            and len(subject) < 900
        )

    def prepare(self, mail: RenderedMail) -> PreparedBody:
        """Encode a body once for many recipients; their values go in by `build_prepared`."""
        return PreparedBody(
            _EncodedPart.of(self._boundary, "plain", mail.text),
            _EncodedPart.of(self._boundary, "html", mail.html),
        )

    def build_prepared(
        self,
        to_address: str,
        subject: str,
        body: PreparedBody,
        values: dict[str, str],
        html_values: dict[str, str],
        now: datetime,
        raw_headers: list[tuple[str, list[str]]],
    ) -> bytes:
        """One recipient's message from a prepared body; `takes(to_address, subject)` must
        hold. Only the recipient's values are encoded here."""
        return self._assemble(
            to_address,
            subject,
            now,
            raw_headers,
            body.text.fill(values),
            body.html.fill(html_values),
        )

    def _assemble(
        self,
        to_address: str,
        subject: str,
        now: datetime,
        raw_headers: list[tuple[str, list[str]]],
        text_part: bytes,
        html_part: bytes,
    ) -> bytes:
        boundary = self._boundary
        head = (
            f"To: {wire_address(to_address)}\r\nSubject: {subject}\r\n"
            f"Date: {format_datetime(now)}\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@{self._msgid_domain}>\r\n"
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
        )
        return b"".join(
            (
                raw_header_lines(raw_headers),
                self._fixed_headers,
                head.encode("ascii"),
                text_part,
                html_part,
                f"--{boundary}--\r\n".encode("ascii"),
            )
        )


def _plain_header(value: str) -> bool:
    return value.isascii() and value.isprintable()


def _part_head(boundary: str, subtype: str) -> bytes:
    return (
        f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode("ascii")


def _qp(content: str) -> bytes:
    encoded = binascii.b2a_qp(content.replace("\r\n", "\n").encode("utf-8"), istext=True)
    return encoded.replace(b"\n", b"\r\n")


def _part(boundary: str, subtype: str, content: str) -> bytes:
    return _part_head(boundary, subtype) + _qp(content) + b"\r\n"


SOFT_BREAK = b"=\r\n"
QP_LINE = 76


def _fragment(content: str) -> bytes:
    """Quoted-printable text that a soft line break will follow: its last line is kept
    short enough for the "=" (never splitting an =XX escape)."""
    encoded = _qp(content)
    start = encoded.rfind(b"\n") + 1
    if len(encoded) - start < QP_LINE:
        return encoded
    cut = start + QP_LINE - 3
    while encoded[cut - 1 : cut] == b"=" or encoded[cut - 2 : cut - 1] == b"=":
        cut -= 1
    return encoded[:cut] + SOFT_BREAK + encoded[cut:]


@dataclass(frozen=True)
class _EncodedPart:
    """A body part encoded once. Each recipient value sits between soft line breaks, so
    it can be encoded on its own and dropped in without re-encoding the rest."""

    pieces: tuple[bytes | str, ...]
    """Encoded bytes, and the names of the values that go between them."""

    @classmethod
    def of(cls, boundary: str, subtype: str, content: str) -> _EncodedPart:
        pieces: list[bytes | str] = [_part_head(boundary, subtype)]
        position, lead = 0, b""
        for marker in MARKER_PATTERN.finditer(content):
            segment = content[position : marker.start()]
            pieces += [lead + _fragment(segment) + SOFT_BREAK, marker[1]]
            position, lead = marker.end(), SOFT_BREAK
        pieces.append(lead + _qp(content[position:]) + b"\r\n")
        return cls(tuple(pieces))

    def fill(self, values: dict[str, str]) -> bytes:
        return b"".join(
            piece if isinstance(piece, bytes) else _fragment(values.get(piece, ""))
            for piece in self.pieces
        )


@dataclass(frozen=True)
class PreparedBody:
    text: _EncodedPart
    html: _EncodedPart
