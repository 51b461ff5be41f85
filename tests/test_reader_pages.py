"""Readers' pages: themed from [theme] (served as /theme.css), in the configured language
(English and German shipped), and under a strict Content-Security-Policy."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from mailer import config
from mailer.db import session_scope
from mailer.models import Subscriber
from mailer.services import Services
from mailer.tokens import Purpose
from mailer.web.pages import LOCALES, contrast, translations
from tests.conftest import SmtpSink, link_in

READER = "reader@example.com"
THEME = {
    "logo_url": "https://news.example.org/logo.svg",
    "accent_color": "#8B0000",
    "text_color": "#111",
    "background_color": "#fffdf5",
    "font_family": 'Georgia, "Times New Roman", serif',
}


def confirm_path(client: TestClient, smtp: SmtpSink) -> str:
    assert client.post("/subscribe", json={"email": READER}).status_code == 202
    [mail] = smtp.wait_for(1)
    return link_in(mail.message, "/confirm/")


def unsubscribe_path(client: TestClient, confirm: str, services: Services) -> str:
    """The reader's unsubscribe link, once they confirmed with `confirm`."""
    assert client.post(confirm).status_code == 200
    with session_scope(services.engine) as session:
        reader = session.scalars(select(Subscriber).where(Subscriber.email == READER)).one()
        return f"/unsubscribe/{services.signer.sign(Purpose.unsubscribe, {'s': reader.id})}"


def html_lang(page: str) -> str:
    found = re.search(r'<html lang="([^"]+)">', page)
    assert found, page[:200]
    return found.group(1)


# ---- theme -----------------------------------------------------------------------------


class TestTheme:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"theme": THEME}

    def test_theme_css_carries_the_colours_and_the_form_shows_the_logo(
        self, client: TestClient
    ) -> None:
        css = client.get("/theme.css")
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        assert "max-age" in css.headers["cache-control"]
        assert "--accent: #8b0000;" in css.text
        assert "--text: #111;" in css.text
        assert "--background: #fffdf5;" in css.text
        assert '--font: Georgia, "Times New Roman", serif;' in css.text
        assert "--on-accent: #ffffff;" in css.text, "white reads better on dark red"

        page = client.get("/forms/default").text
        assert '<link rel="stylesheet" href="/theme.css">' in page
        assert '<img src="https://news.example.org/logo.svg" alt="Example News">' in page
        assert page.index("logo.svg") < page.index("<h1>"), "the logo is above the heading"


def test_without_a_logo_there_is_no_image_and_the_defaults_read_well(client: TestClient) -> None:
    assert "<img" not in client.get("/forms/default").text
    defaults = config.ThemeSettings()
    assert contrast(defaults.text_color, defaults.background_color) >= 4.5
    assert contrast(defaults.accent_color, "#ffffff") >= 4.5, "button text on the accent"
    assert contrast("#065f46", "#ecfdf5") >= 4.5, "the green notice"
    assert "--accent: #1d4ed8;" in client.get("/theme.css").text


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("accent_color", "red"),
        ("text_color", "#12345"),
        ("background_color", "#fff; } body { display: none"),
        ("font_family", "Arial; } * { color: red"),
        ("font_family", 'Arial, "Open Sans'),
        ("logo_url", "javascript:alert(1)"),
        ("logo_url", "http://news.example.org/logo.png"),
        ("language", "fr"),
    ],
)
def test_an_unsafe_theme_value_is_refused_at_start_up_naming_it(key: str, value: str) -> None:
    with pytest.raises(config.ConfigError, match=rf"theme\.{key}"):
        config.load(theme={key: value})


def test_a_theme_colour_from_the_environment_is_checked_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAILER_THEME__ACCENT_COLOR", "#0A7")
    assert config.load().theme.accent_color == "#0a7"
    monkeypatch.setenv("MAILER_THEME__ACCENT_COLOR", "url(x)")
    with pytest.raises(config.ConfigError, match="not a colour"):
        config.load()


# ---- language --------------------------------------------------------------------------


def test_by_default_the_pages_are_in_english(
    client: TestClient, smtp: SmtpSink, services: Services
) -> None:
    form = client.get("/forms/default").text
    assert html_lang(form) == "en"
    assert ">Sign up</button>" in form and ">Email address</label>" in form
    thanks = client.get("/forms/default/thanks").text
    assert html_lang(thanks) == "en" and "Check your inbox" in thanks
    confirm_link = confirm_path(client, smtp)
    confirm = client.get(confirm_link).text
    assert "Confirm my subscription</button>" in confirm
    leave = client.get(unsubscribe_path(client, confirm_link, services)).text
    assert html_lang(leave) == "en"
    assert ">Unsubscribe</button>" in leave and "Save preferences" in leave
    script = client.get("/forms/default/embed.js").text
    assert '"Sign up"' in script and "Please check your inbox" in script


class TestGerman:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"theme": {"language": "de"}}

    def test_the_form_thank_you_confirm_and_unsubscribe_pages_are_in_german(
        self, client: TestClient, smtp: SmtpSink, services: Services
    ) -> None:
        form = client.get("/forms/default").text
        assert html_lang(form) == "de"
        assert ">Anmelden</button>" in form
        assert ">E-Mail-Adresse</label>" in form

        thanks = client.get("/forms/default/thanks").text
        assert html_lang(thanks) == "de"
        assert "Sehen Sie in Ihr Postfach" in thanks

        confirm_link = confirm_path(client, smtp)
        confirm = client.get(confirm_link).text
        assert html_lang(confirm) == "de"
        assert ">Abonnement bestätigen</button>" in confirm

        unsubscribe = unsubscribe_path(client, confirm_link, services)
        leave = client.get(unsubscribe).text
        assert html_lang(leave) == "de"
        assert ">Abmelden</button>" in leave
        assert "Einstellungen speichern" in leave
        assert "(bestätigt)" in leave
        left = client.post(unsubscribe)
        assert "Sie sind abgemeldet" in left.text

    def test_the_embedded_form_and_refusals_speak_german(self, client: TestClient) -> None:
        script = client.get("/forms/default/embed.js").text
        assert '"Anmelden"' in script
        assert "E-Mail-Adresse" in script
        assert '"Sign up"' not in script

        refused = client.post("/subscribe", json={"email": "reader@example"})
        assert refused.status_code == 422
        assert refused.json()["detail"] == "Bitte geben Sie eine gültige E-Mail-Adresse ein."
        page = client.post("/subscribe", data={"email": "reader@example"})
        assert page.status_code == 422
        assert html_lang(page.text) == "de"
        assert "Die Anmeldung hat nicht geklappt" in page.text
        assert '<a href="/forms/default">Zurück</a>' in page.text

        bad_link = client.get("/confirm/not-a-token")
        assert bad_link.status_code == 404 and "Dieser Link ist ungültig" in bad_link.text

    def test_the_editors_pages_stay_in_english(self, client: TestClient) -> None:
        assert html_lang(client.get("/admin/").text) == "en"


def test_the_catalogues_translate_every_message() -> None:
    english = translations("en")
    german = translations("de")
    po = (LOCALES / "de" / "LC_MESSAGES" / "messages.po").read_text(encoding="utf-8")
    ids = re.findall(r'^msgid "(.+)"$', po, flags=re.MULTILINE)
    assert len(ids) > 50
    for message in ids:
        assert english.gettext(message) == message
        assert german.gettext(message) != message, message


# ---- security headers ------------------------------------------------------------------


def test_every_reader_page_has_a_policy_without_inline_code(
    client: TestClient, smtp: SmtpSink, services: Services
) -> None:
    confirm_link = confirm_path(client, smtp)
    pages = {"/confirm/<token>": client.get(confirm_link)}
    unsubscribe = unsubscribe_path(client, confirm_link, services)
    pages |= {
        "/forms/default": client.get("/forms/default"),
        "/forms/default/thanks": client.get("/forms/default/thanks"),
        "/unsubscribe/<token>": client.get(unsubscribe),
        "/unsubscribe/<token> (done)": client.post(unsubscribe),
        "/confirm/bad": client.get("/confirm/bad"),
        "/subscribe (refused)": client.post("/subscribe", data={"email": "x"}),
        "/theme.css": client.get("/theme.css"),
    }
    for name, answer in pages.items():
        policy = answer.headers["content-security-policy"]
        assert "'unsafe-inline'" not in policy, name
        assert "script-src 'self'" in policy and "style-src 'self'" in policy, name
        if answer.headers["content-type"].startswith("text/html"):
            assert " style=" not in answer.text and "<style" not in answer.text, name
            assert "<script>" not in answer.text and "javascript:" not in answer.text, name
