"""Server-rendered pages: the Jinja2 environment over mailer/web/templates, the readers'
language (Babel message catalogues under mailer/web/locale, compiled at start-up) and
theme (/theme.css), and where the static files (CSS, scripts) live.

To add strings after changing a template or a module that marks them with N_ (babel.cfg):
    pybabel extract -F babel.cfg -o messages.pot .
    pybabel update -i messages.pot -d mailer/web/locale
then translate the new entries in each messages.po. Nothing needs compiling: the .po
files are read when the app starts.
"""

from __future__ import annotations

import gettext
from io import BytesIO
from pathlib import Path
from typing import Any

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from mailer.config import ThemeSettings

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
LOCALES = Path(__file__).resolve().parent / "locale"


def translations(language: str) -> gettext.NullTranslations:
    """The catalogue of `language`, compiled from its .po file in memory."""
    po_file = LOCALES / language / "LC_MESSAGES" / "messages.po"
    if not po_file.is_file():
        return gettext.NullTranslations()
    with po_file.open("rb") as source:
        catalog = read_po(source, locale=language)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def _luminance(color: str) -> float:
    """Relative luminance (WCAG 2) of a #rgb or #rrggbb colour."""
    digits = color.lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    channels = []
    for i in (0, 2, 4):
        c = int(digits[i : i + 2], 16) / 255
        channels.append(c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4)
    red, green, blue = channels
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(first: str, second: str) -> float:
    """The WCAG contrast ratio of two colours (1 to 21)."""
    light, dark = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def theme_css(theme: ThemeSettings) -> str:
    """The theme as CSS custom properties; reader.css uses them. Button text is white or
    black, whichever has more contrast with the accent colour."""
    on_accent = (
        "#ffffff"
        if contrast(theme.accent_color, "#ffffff") >= contrast(theme.accent_color, "#000000")
        else "#000000"
    )
    return (
        ":root {\n"
        f"  --accent: {theme.accent_color};\n"
        f"  --on-accent: {on_accent};\n"
        f"  --text: {theme.text_color};\n"
        f"  --background: {theme.background_color};\n"
        f"  --font: {theme.font_family};\n"
        "}\n"
    )


class Pages:
    def __init__(self, site_name: str, theme: ThemeSettings | None = None) -> None:
        self.theme = theme or ThemeSettings()
        self.language = self.theme.language
        self.translations = translations(self.language)
        self.env = Environment(
            loader=FileSystemLoader(str(TEMPLATES)),
            autoescape=select_autoescape(enabled_extensions=("html", "js", "xml")),
            extensions=["jinja2.ext.i18n"],
        )
        self.env.install_gettext_translations(self.translations, newstyle=True)  # type: ignore[attr-defined]
        self.env.globals["site_name"] = site_name
        self.env.globals["language"] = self.language
        self.env.globals["theme"] = self.theme
        self.css = theme_css(self.theme)

    def gettext(self, message: str, **params: Any) -> str:
        """`message` in the readers' language, with `params` filled in."""
        translated = self.translations.gettext(message)
        return translated % params if params else translated

    def knows(self, message: str) -> bool:
        """Whether the catalogue has a translation of `message` (English always does)."""
        return self.language == "en" or self.translations.gettext(message) != message

    def render(
        self,
        name: str,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        # The editors' pages are in English; the readers' in the configured language.
        context.setdefault("page_language", "en" if name.startswith("admin/") else self.language)
        html = self.env.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status_code, headers=headers)

    def render_text(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(**context)


def pages_of(request: Request) -> Pages:
    """The app's page renderer (made once by the app factory)."""
    found: Pages = request.app.state.pages
    return found
