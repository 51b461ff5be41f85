"""Liveness, readiness (the database answers, with mailer's schema) and Prometheus
metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from mailer.db import serves, session_scope
from mailer.delivery import outbox
from mailer.http.deps import ServicesDep

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "The database does not answer."}})
def readyz(services: ServicesDep) -> Response:
    """The database answers, with mailer's schema in it."""
    if serves(services.engine):
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "database unreachable"}, status_code=503)


@router.get("/metrics")
def metrics(services: ServicesDep) -> Response:
    """Prometheus metrics."""
    try:
        with session_scope(services.engine) as session:
            services.metrics.outbox_depth.set(outbox.depth(session))
    except Exception:
        log.warning("could not read the outbox depth for /metrics")
    return Response(
        services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
