"""Server-rendered pages: the Jinja2 environment over mailer/web/templates, and where the
static files (CSS, scripts) live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"


class Pages:
    def __init__(self, site_name: str) -> None:
        self.env = Environment(
            loader=FileSystemLoader(str(TEMPLATES)),
            autoescape=select_autoescape(enabled_extensions=("html", "js", "xml")),
        )
        self.env.globals["site_name"] = site_name

    def render(
        self,
        name: str,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        html = self.env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status_code, headers=headers)

    def render_text(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(**context)
