"""Refusals as the editors' API answers them: `{"detail": ...}` with the refusal's status."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from mailer.errors import MailerError


def json_refusal(_request: Request, exc: MailerError) -> Response:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status)
