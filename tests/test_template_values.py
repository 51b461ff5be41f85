"""Editors' templates see plain values, not database rows: nothing they write can change
the database, list its tables or reach a session, and a preview writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from mailer.clock import FrozenClock
from mailer.db import session_scope
from mailer.models import Article, Digest, MailingList, Send
from mailer.services import Services
from tests.conftest import SmtpSink, one_article, outbox_idle, store_template
from tests.factories import confirmed_reader

WRITERS = [
    "{{ list.sqlmodel_update({'name': 'Hacked'}) }}",
    "{{ digest.sqlmodel_update({'name': 'Hacked'}) }}",
    "{{ articles[0].sqlmodel_update({'title': 'Hacked'}) }}",
    "{% for a in articles %}{{ a.sqlmodel_update({'title': 'Hacked'}) }}{% endfor %}",
    "{{ list.model_validate({'name': 'Hacked'}) }}",
    "{{ list|attr('sqlmodel_update') }}",
    "{% set u = list.sqlmodel_update %}{{ u({'name': 'Hacked'}) }}",
    "{{ digest.model_copy(update={'name': 'Hacked'}) }}",
    "{{ list.__setattr__('name', 'Hacked') }}",
    "{{ list|attr('__setattr__') }}",
    "{{ digest.topics.append('Hacked') }}",
    "{{ articles[0].topics.append('Hacked') }}",
    "{{ articles.append(1) }}",
    "{{ digest.metadata }}",
    "{{ digest.metadata.tables }}",
    "{{ list.registry }}",
    "{{ list.__table__ }}",
    "{{ list|attr('__table__') }}",
    "{{ digest['_sa_instance_state'] }}",
    "{{ digest|attr('_sa_instance_state') }}",
    "{{ list.__class__.metadata }}",
    "{{ digest.model_fields }}",
    "{{ digest.model_dump() }}",
]
TABLE_NAMES = ("consent_events", "subscribers", "api_keys", "Table(", "sqlalchemy")


def digest_with_stored(services: Services, editor: TestClient, part: str, template: str) -> int:
    """A digest whose `part` template is `template`, with one article to show."""
    one_article(editor, services)
    digest = editor.post(
        "/api/v1/digests", json={"list": "news", "name": "Brief", "schedule": "0 7 * * *"}
    )
    assert digest.status_code == 201
    store_template(services, digest.json()["id"], part, template)
    return int(digest.json()["id"])


def stored_values(services: Services) -> dict[str, Any]:
    with session_scope(services.engine) as session:
        return {
            "lists": sorted(session.exec(select(MailingList.name))),
            "digests": list(session.exec(select(Digest.name).order_by(col(Digest.id)))),
            "articles": [
                (article.title, article.topics)
                for article in session.exec(select(Article).order_by(col(Article.id)))
            ],
        }


@pytest.mark.parametrize("part", ["subject", "html"])
def test_a_template_cannot_change_or_describe_the_database(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock, part: str
) -> None:
    confirmed_reader(editor, smtp, "ada@example.com")
    digest_id = digest_with_stored(services, editor, part, "{{ digest.name }}")
    before = stored_values(services)
    for template in WRITERS:
        store_template(services, digest_id, part, template)
        preview = editor.get(f"/api/v1/digests/{digest_id}/preview")
        assert preview.status_code in (200, 422), (template, preview.text)
        assert not any(name in preview.text for name in TABLE_NAMES), (template, preview.text)
        assert stored_values(services) == before, f"a preview of {template} changed the database"

        clock.advance(minutes=1)
        send = editor.post(f"/api/v1/digests/{digest_id}/send")
        assert send.status_code == 202, (template, send.text)
        with session_scope(services.engine) as session:
            row = session.get(Send, send.json()["id"])
            assert row is not None
            shown = f"{row.subject}{row.html}{row.text}{row.reason}"
        assert not any(name in shown for name in TABLE_NAMES), (template, shown)
        assert stored_values(services) == before, f"a send of {template} changed the database"
    outbox_idle(services)
    assert stored_values(services) == before


def test_templates_show_the_fields_of_lists_digests_and_articles(
    editor: TestClient, services: Services
) -> None:
    template = (
        "{{ list.name }}|{{ list.slug }}|{{ digest.name }}|{{ digest.max_articles }}|"
        "{% for a in articles %}{{ a.title }}|{{ a.url }}|{{ a.topics|join(',') }}|"
        "{{ a.published_at.strftime('%Y') }}{% endfor %}|{{ site_name }}"
    )
    digest_id = digest_with_stored(services, editor, "text", template)
    preview = editor.get(f"/api/v1/digests/{digest_id}/preview")
    assert preview.status_code == 200, preview.text
    year = services.clock.now().strftime("%Y")
    assert preview.json()["text"].startswith(
        f"News|news|Brief|10|A story|https://news.example.com/story|world|{year}|Example News"
    )
