"""Email templates (Jinja2): the project's templates/emails/, overridable by a config path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str


class MailRenderer:
    """Renders a named mail (`<name>.subject.txt`, `<name>.txt`, `<name>.html`)."""

    def __init__(self, template_dirs: list[Path]) -> None:
        self._env = Environment(
            loader=FileSystemLoader([str(d) for d in template_dirs]),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._inliner = css_inline.CSSInliner(keep_style_tags=False)

    def render(self, name: str, **context: Any) -> RenderedMail:
        subject = self._env.get_template(f"{name}.subject.txt").render(**context)
        text = self._env.get_template(f"{name}.txt").render(**context)
        html = self._env.get_template(f"{name}.html").render(**context)
        return RenderedMail(
            subject=" ".join(subject.split()),
            text=text.strip() + "\n",
            html=self._inliner.inline(html),
        )
