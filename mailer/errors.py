"""The refusals every layer raises when a caller asked for something that cannot be done.

Each kind carries a message that is safe to show to whoever made the request (no SQL, no
stack, nothing about other people), and the one HTTP status it stands for. The surfaces
map them in one place each: JSON answers for the editors' API and scripts, pages for
people (`mailer.web.errors`), and one line with an exit code for the CLI
(`mailer.cli.common`). Domain code raises these and never builds an HTTP answer.

A message is English with ``%(name)s`` placeholders filled from ``params``, so a page
can show it in the reader's language; `general` is the sentence to show instead when a
catalogue has no translation of the exact message (a library's own words).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mailer.ratelimit import retry_after_header


def N_(message: str) -> str:  # noqa: N802 (the name pybabel looks for)
    """Marks a message for the readers' catalogues; it is translated where it is shown."""
    return message


class MailerError(Exception):
    """Base of every refusal; `status` is its HTTP status, `exit_code` its CLI exit code."""

    status: int = 400
    exit_code: ClassVar[int] = 2

    def __init__(
        self,
        message: str,
        *,
        params: Mapping[str, Any] | None = None,
        general: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.template = message
        self.params = dict(params or {})
        self.general = general
        self.headers = dict(headers or {})
        self.message = message % self.params if self.params else message
        """The message with its placeholders filled."""
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.detail

    @property
    def detail(self) -> str:
        """What a caller is told: the message, with the field it concerns where known."""
        return self.message

    @property
    def field(self) -> str:
        """The input field the refusal is about, or ""."""
        return ""


class Invalid(MailerError):
    """A value is malformed, unsafe or out of range; `field` names it."""

    status = 422

    def __init__(self, field: str, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self._field = field

    @property
    def field(self) -> str:
        return self._field

    @property
    def detail(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class Malformed(Invalid):
    """The request itself cannot be read (not JSON, a broken form body)."""

    status = 400


class TooLarge(Invalid):
    """The request body is larger than allowed."""

    status = 413

    @classmethod
    def past(cls, limit: int) -> TooLarge:
        return cls(
            "", N_("the request body is larger than %(limit)s bytes"), params={"limit": limit}
        )


class Unsupported(Invalid):
    """The request is in a format that is not accepted."""

    status = 415


class NotFound(MailerError):
    """There is no such thing (or the caller may not know that there is): `what` names it,
    and the message defaults to "<what> not found"."""

    status = 404

    def __init__(self, what: str, message: str = "", **kwargs: Any) -> None:
        super().__init__(message or f"{what} not found", **kwargs)
        self.what = what


class Gone(MailerError):
    """It existed but is no longer usable (an expired or revoked link)."""

    status = 410


class Conflict(MailerError):
    """It exists already, or its state does not allow this now."""

    status = 409


class Forbidden(MailerError):
    """The caller is known but may not do this."""

    status = 403


class TooMany(MailerError):
    """Too many requests of this kind just now; `retry_after` is in seconds."""

    status = 429
    exit_code = 75  # EX_TEMPFAIL

    def __init__(self, message: str, retry_after: float, **kwargs: Any) -> None:
        headers = {"Retry-After": retry_after_header(retry_after), **kwargs.pop("headers", {})}
        super().__init__(message, headers=headers, **kwargs)
        self.retry_after = retry_after


class Unavailable(MailerError):
    """Something this needs does not answer just now (the database, a relay)."""

    status = 503
    exit_code = 75  # EX_TEMPFAIL
