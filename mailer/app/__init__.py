"""The whole HTTP app, composed: `create_app` wires the editors' API (mailer.api), the web
pages (mailer.web), the middleware that answers for both, and the scheduler (mailer.jobs)."""

from mailer.app.factory import create_app

__all__ = ["create_app"]
