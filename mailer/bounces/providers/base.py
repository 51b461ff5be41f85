"""What every provider's receiver shares: the refusal it raises, what it reads a
notification into, and the shape it has."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from mailer.bounces.handling import Report
from mailer.bounces.replay import Identity


class Refused(Exception):
    """The notification is not accepted; `status` is the HTTP answer (400 malformed, 401
    no credentials, 403 bad signature, 503 a check could not be made just now)."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


@dataclass(frozen=True)
class Notification:
    """A checked notification: its reports, and what identifies it so that it is acted
    on once (None: nothing in it could be acted on twice)."""

    reports: list[Report]
    identity: Identity | None = None


class Receiver(Protocol):
    """One provider's webhook: off unless configured; reads a checked notification."""

    name: str

    @property
    def configured(self) -> bool: ...

    async def receive(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        """A notification whose signature checks out, or `Refused`."""
        ...


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 refusal."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise Refused(400, "the body is not valid JSON") from exc
    if not isinstance(value, dict):
        raise Refused(400, "the body must be a JSON object")
    return value


def text(value: Any, limit: int = 2000) -> str:
    """A provider's field as text: strings (without NUL characters, which no database
    column takes) and numbers written out, else ""."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, str | int | float):
        return str(value).replace("\x00", "")[:limit]
    return ""


def mapping(value: Any) -> dict[str, Any]:
    """A provider's field as an object ({} when it is something else)."""
    return value if isinstance(value, dict) else {}


def objects(value: Any) -> list[dict[str, Any]]:
    """The objects in a provider's list field (anything else left out)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
