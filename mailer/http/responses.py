"""The refusals each part of the HTTP API may answer with, as declared in /openapi.json.

Declared once per router so the schema names every status a client can meet, and the
shape of the editors' API errors: `{"detail": message}` from the domain, or FastAPI's
list of field errors when a request does not match its model.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

Responses = dict[int | str, dict[str, Any]]


class ApiError(BaseModel):
    detail: str | list[dict[str, Any]]
    """What was wrong: a sentence, or one entry per field that failed validation."""


def _json(description: str) -> dict[str, Any]:
    return {"model": ApiError, "description": description}


EDITORS: Responses = {
    400: _json("The request is malformed."),
    401: _json("No API key, or one that is wrong or revoked."),
    403: _json("Signed in through /admin/ but without the X-CSRF-Token header."),
    404: _json("No such list, form, subscriber, article, digest, send or webhook."),
    409: _json("It exists already, or its state does not allow this."),
    413: _json("The request body is too large."),
    422: _json("A value is invalid; `detail` says which and why."),
    503: _json("The database does not answer just now; try again after Retry-After seconds."),
}
"""What any /api/v1 call may answer besides its success."""


_PAGE_OR_JSON = {
    "text/html": {"schema": {"type": "string"}},
    "application/json": {"schema": ApiError.model_json_schema()},
}


def _reader(description: str) -> dict[str, Any]:
    return {"description": description, "content": _PAGE_OR_JSON}


READERS: Responses = {
    400: _reader("The body or a value in it is malformed."),
    404: _reader("No such form, list, link or archive."),
    410: _reader("The link has expired or was used up."),
    413: _reader("The request body is too large."),
    415: _reader("The body is neither JSON, urlencoded nor multipart."),
    422: _reader("A field is invalid (a bad address, an unknown list, ...)."),
    429: _reader("Too many requests from this network or for this address; see Retry-After."),
    503: _reader("The database does not answer just now; try again after Retry-After seconds."),
}
"""What the readers' routes (forms, signup, confirm, unsubscribe, archive) may answer
besides their success: a page for browsers, `{"detail": ...}` for scripts."""
