"""Refusals particular to subscriptions, each one of the kinds in `mailer.errors`."""

from __future__ import annotations

from typing import Any

from mailer.errors import Gone, Invalid, NotFound


class UnknownForm(NotFound):
    """No signup form has this slug."""

    def __init__(self, slug: str, **kwargs: Any) -> None:
        super().__init__("form", f"unknown form {slug}", **kwargs)
        self.slug = slug


class UnknownList(Invalid):
    """No list has this slug (a value in the request, so 422 rather than 404)."""

    def __init__(self, slug: str, **kwargs: Any) -> None:
        super().__init__("list", f"unknown list {slug}", **kwargs)
        self.slug = slug

    @property
    def detail(self) -> str:
        return self.message


class Expired(Gone):
    """A confirm link past its expiry, or revoked by a later unsubscribe."""
