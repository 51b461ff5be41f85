"""Signed, purpose-bound tokens for links in mail (confirm, unsubscribe, bounce).

A token is `<payload>.<mac>`, both base64url. The MAC key is derived from the server's
secret and the token's purpose, so a token for one purpose never verifies for another.
Expiry and single use are decided by the rows the payload points at, not by the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from enum import StrEnum
from typing import Any

MAX_TOKEN_LENGTH = 512


class Purpose(StrEnum):
    confirm = "confirm"
    unsubscribe = "unsubscribe"
    bounce = "bounce"


class BadToken(Exception):
    """The token is malformed, forged, or meant for another purpose."""


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if not number:
            return text


class Signer:
    """Makes and checks tokens with one server secret."""

    def __init__(self, secret: bytes) -> None:
        self._keys = {
            purpose: hmac.new(secret, f"mailer-token:{purpose}".encode(), hashlib.sha256).digest()
            for purpose in Purpose
        }

    def _mac(self, purpose: Purpose, payload: str) -> str:
        return _b64encode(hmac.new(self._keys[purpose], payload.encode(), hashlib.sha256).digest())

    def sign(self, purpose: Purpose, data: dict[str, Any]) -> str:
        payload = _b64encode(json.dumps(data, separators=(",", ":"), sort_keys=True).encode())
        return f"{payload}.{self._mac(purpose, payload)}"

    def return_path_tag(self, outbox_id: int) -> str:
        """A short tag for a VERP bounce address: the outbox row's id and a MAC, in lower
        case letters and digits (the local part of an address is 64 characters at most,
        and some systems change its case)."""
        number = _base36(outbox_id)
        return f"{number}-{self._short_mac(number)}"

    def read_return_path_tag(self, tag: str) -> int:
        """The outbox row id in a tag made by `return_path_tag`, or BadToken."""
        number, _, mac = tag.lower().partition("-")
        if not number or len(number) > 13 or not number.isalnum() or not mac:
            raise BadToken("malformed bounce tag")
        if not hmac.compare_digest(mac.encode(), self._short_mac(number).encode()):
            raise BadToken("bad signature")
        return int(number, 36)

    def _short_mac(self, number: str) -> str:
        digest = hmac.new(self._keys[Purpose.bounce], number.encode(), hashlib.sha256).digest()
        return base64.b32encode(digest[:10]).decode().lower()

    def verify(self, purpose: Purpose, token: str) -> dict[str, Any]:
        """The token's data, or BadToken."""
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
            raise BadToken("malformed token")
        payload, mac = token.split(".")
        if not hmac.compare_digest(mac.encode(), self._mac(purpose, payload).encode()):
            raise BadToken("bad signature")
        try:
            data = json.loads(_b64decode(payload))
        except ValueError as exc:
            raise BadToken("malformed payload") from exc
        if not isinstance(data, dict):
            raise BadToken("malformed payload")
        return data
