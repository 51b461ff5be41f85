"""Webhook signatures: HMAC-SHA256 over "<unix timestamp>.<body>", hex, as `sha256=<hex>`.

Receivers verify with `verify` (or the same few lines of their own, see README): compare in
constant time and refuse timestamps far from their own clock, so a captured request cannot
be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SCHEME = "sha256="
DEFAULT_TOLERANCE_SECONDS = 300


def new_secret() -> str:
    """A fresh endpoint secret (256 bits, URL-safe)."""
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: str | bytes) -> str:
    """The `X-Mailer-Signature` value for this body sent at this unix time."""
    raw = body.encode() if isinstance(body, str) else body
    message = str(timestamp).encode() + b"." + raw
    return SCHEME + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    timestamp: str | int,
    body: str | bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """True if `signature` (the X-Mailer-Signature header) signs `body` with `secret` at
    `timestamp` (the X-Mailer-Timestamp header), and that time is within the tolerance."""
    try:
        sent_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, sent_at, body), signature)
