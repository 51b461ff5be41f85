"""Readers' request bodies read into fields: JSON, urlencoded or multipart, within a byte
cap, with every value a bounded string; a body that cannot be read is refused (400, 413,
415, 422) before any use case sees it."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from mailer.errors import N_, Invalid, Malformed, TooLarge, Unsupported
from mailer.subscriptions.readers import Signup

MAX_FIELD_LENGTH = 2000
TRUE_VALUES = {"1", "true", "on", "yes"}


def _too_large(limit: int) -> TooLarge:
    return TooLarge(
        "", N_("the request body is larger than %(limit)s bytes"), params={"limit": limit}
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past `limit` bytes (checked while reading)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise TooLarge.past(limit)
        except ValueError as exc:
            raise Malformed("", N_("bad Content-Length")) from exc
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge.past(limit)
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise Malformed("", N_("the client went away before sending the whole body")) from exc
    body = b"".join(chunks)
    request._body = body  # let request.form() parse what was already read
    return body


def as_list(value: Any) -> list[str]:
    """Slugs from a repeated field or a comma-separated one."""
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    result: list[str] = []
    for item in values:
        if not isinstance(item, str):
            raise Invalid("lists", N_("lists must be list slugs"))
        result.extend(part.strip() for part in item.split(",") if part.strip())
    return result


def text(values: dict[str, Any], name: str) -> str:
    """Field `name` as one bounded string ("" when absent)."""
    value = values.get(name, "")
    if isinstance(value, list):
        value = value[0] if value else ""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else ""
    if not isinstance(value, str | int | float):
        raise Invalid(name, N_("%(name)s must be a string"), params={"name": name})
    found = str(value)
    if len(found) > MAX_FIELD_LENGTH:
        raise Invalid(name, N_("%(name)s is too long"), params={"name": name})
    return found


def _many(field: str) -> bool:
    """Fields that may repeat: the lists ticked, and each list's topics."""
    return field == "lists" or field.startswith("topics:")


async def parse_fields(request: Request, limit: int) -> tuple[dict[str, Any], bool]:
    """The submitted fields, and whether the client speaks JSON."""
    body = await read_body(request, limit)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            values = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise Malformed("", N_("the body is not valid JSON")) from exc
        if not isinstance(values, dict):
            raise Malformed("", N_("the JSON body must be an object"))
        return values, True
    if content_type == "application/x-www-form-urlencoded":
        try:
            parsed = parse_qs(
                body.decode("utf-8"),
                keep_blank_values=True,
                strict_parsing=False,
                max_num_fields=50,
            )
        except (ValueError, UnicodeDecodeError) as exc:
            raise Malformed("", N_("the form body is malformed")) from exc
        return {k: v if _many(k) else v[0] for k, v in parsed.items()}, False
    if content_type == "multipart/form-data":
        try:
            form = await request.form(max_files=0, max_fields=50)
        except Exception as exc:  # python-multipart raises several types on bad input
            raise Malformed("", N_("the multipart body is malformed")) from exc
        values = {}
        for key in form:
            items = form.getlist(key)
            if any(isinstance(item, UploadFile) for item in items):
                raise Malformed("", N_("file uploads are not accepted"))
            values[key] = items if _many(key) else items[0]
        return values, False
    raise Unsupported("", N_("send application/json, urlencoded or multipart form data"))


def signup_of(values: dict[str, Any], request: Request) -> Signup:
    """The signup in `values`; the page it came from is the Referer when not given."""
    fields = Signup(
        email=text(values, "email"),
        name=text(values, "name").strip(),
        form=text(values, "form") or "default",
        lists=as_list(values.get("lists")),
        source_url=text(values, "source_url") or request.headers.get("referer", ""),
        website=text(values, "website"),
        consent=text(values, "consent").lower() in TRUE_VALUES,
    )
    fields.source_url = fields.source_url[:MAX_FIELD_LENGTH]
    return fields
