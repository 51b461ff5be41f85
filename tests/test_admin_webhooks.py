"""Webhooks at /admin/webhooks: editors add an endpoint (its secret shown once), see its
deliveries with every try from a real local endpoint, retry a failed one, edit it, and
delete it after a confirmation; bad input and forged forms write nothing."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from mailer.db import session_scope
from mailer.models import WebhookDelivery, WebhookEndpoint
from mailer.services import Services
from tests.admin import csrf_of
from tests.conftest import count_rows
from tests.peers import Receiver

HOME = "/admin/webhooks"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        # The receivers run on this machine, which outbound requests may not reach else.
        "network": {"allowed_private_networks": ["127.0.0.0/8", "::1/128"]},
        "webhooks": {
            "allow_http": True,
            "poll_interval_seconds": 0.05,
            "max_attempts": 1,
            "timeout_seconds": 3,
        },
    }


def csrf(client: TestClient) -> str:
    return csrf_of(client.get(HOME).text)


def add(client: TestClient, url: str, events: list[str], description: str = "") -> Any:
    return client.post(
        HOME,
        data={"url": url, "events": events, "description": description, "csrf": csrf(client)},
        follow_redirects=False,
    )


def shown_secret(page: str) -> str:
    found = re.search(r'id="secret" class="secret" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def only_endpoint(services: Services) -> WebhookEndpoint:
    with session_scope(services.engine) as session:
        endpoint = session.exec(select(WebhookEndpoint)).one()
        session.expunge(endpoint)
    return endpoint


def delivery_row(page: str, delivery_id: int) -> str:
    found = re.search(rf'<tr id="delivery-{delivery_id}">.*?</tr>', page, re.S)
    assert found, page
    return found.group(0)


def page_when(client: TestClient, path: str, wanted: str, timeout: float = 10.0) -> str:
    """The page once it shows `wanted` (the worker delivers in the background)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = client.get(path).text
        if wanted in page:
            return page
        time.sleep(0.05)
    raise AssertionError(f"{wanted!r} never showed on {path}")


def test_an_editor_adds_an_endpoint_and_sees_its_secret_only_once(
    signed_in: TestClient, services: Services, receiver: Receiver
) -> None:
    answer = add(signed_in, receiver.url, ["subscriber.created", "send.finished"], "CRM")
    assert answer.status_code == 200, "the secret is on this answer, not behind a redirect"
    assert "no-store" in answer.headers["cache-control"]
    secret = shown_secret(answer.text)
    assert "X-Mailer-Signature" in answer.text and "X-Mailer-Timestamp" in answer.text
    stored = only_endpoint(services)
    assert stored.secret == secret
    assert stored.events == ["subscriber.created", "send.finished"]
    assert stored.description == "CRM" and stored.enabled

    listing = signed_in.get(HOME).text
    assert receiver.url in listing and "subscriber.created, send.finished" in listing
    assert secret not in listing, "shown once"
    assert secret not in signed_in.get(f"{HOME}/{stored.id}").text
    assert '<a href="/admin/webhooks" aria-current="page">Webhooks</a>' in listing


@pytest.mark.parametrize(
    ("url", "events", "message"),
    [
        ("ftp://hooks.example.com/in", ["send.started"], "URL: must start with https://."),
        ("https://user:pw@hooks.example.com/", ["send.started"], "must not carry a user name"),
        ("https://hooks.example.com/in", [], "Events: choose at least one event."),
        ("https://hooks.example.com/in", ["send.exploded"], "unknown event"),
    ],
)
def test_bad_input_shows_the_apis_message_on_the_form_and_writes_nothing(
    signed_in: TestClient, services: Services, url: str, events: list[str], message: str
) -> None:
    answer = add(signed_in, url, events, "kept in the form")
    assert answer.status_code == 422
    assert message in answer.text
    assert 'value="kept in the form"' in answer.text
    assert count_rows(services, WebhookEndpoint) == 0
    api = signed_in.post("/api/v1/webhooks", json={"url": url, "events": events or ["x"]})
    assert api.status_code == 422


def test_a_forged_form_is_refused_and_writes_nothing(
    signed_in: TestClient, services: Services, receiver: Receiver
) -> None:
    answer = signed_in.post(
        HOME,
        data={"url": receiver.url, "events": ["send.started"], "csrf": "forged"},
        follow_redirects=False,
    )
    assert answer.status_code == 403
    assert count_rows(services, WebhookEndpoint) == 0

    assert add(signed_in, receiver.url, ["send.started"]).status_code == 200
    endpoint = only_endpoint(services)
    for path in (f"{HOME}/{endpoint.id}/delete", f"{HOME}/{endpoint.id}/test"):
        refused = signed_in.post(path, data={"csrf": "forged"}, follow_redirects=False)
        assert refused.status_code == 403, path
    assert count_rows(services, WebhookEndpoint) == 1
    assert count_rows(services, WebhookDelivery) == 0


def test_a_failed_test_event_shows_its_try_and_a_retry_delivers_it(
    signed_in: TestClient, services: Services, receiver: Receiver
) -> None:
    add(signed_in, receiver.url, ["subscriber.created"])
    endpoint = only_endpoint(services)
    page_path = f"{HOME}/{endpoint.id}"
    assert "No deliveries yet" in signed_in.get(page_path).text
    receiver.replies.append(503)
    queued = signed_in.post(
        f"{page_path}/test", data={"csrf": csrf(signed_in)}, follow_redirects=False
    )
    assert queued.status_code == 303

    page = page_when(signed_in, page_path, '<span class="badge failed">failed</span>')
    with session_scope(services.engine) as session:
        [delivery] = session.exec(select(WebhookDelivery)).all()
    row = delivery_row(page, delivery.id or 0)
    assert "ping" in row and "HTTP 503" in row and "something broke" in row
    assert "Retry" in row
    assert "0 pending, 0 delivered, 1 failed" in page
    assert re.search(r'<td class="number">1</td>\s*</tr>', signed_in.get(HOME).text)

    retried = signed_in.post(
        f"{page_path}/deliveries/{delivery.id}/retry",
        data={"csrf": csrf(signed_in)},
        follow_redirects=False,
    )
    assert retried.status_code == 303
    page = page_when(signed_in, page_path, '<span class="badge delivered">delivered</span>')
    row = delivery_row(page, delivery.id or 0)
    assert row.index("HTTP 503") < row.index("HTTP 200"), "both tries, oldest first"
    assert "Retry" not in row
    assert len(receiver.wait_for(2)) == 2

    again = signed_in.post(
        f"{page_path}/deliveries/{delivery.id}/retry",
        data={"csrf": csrf(signed_in)},
        follow_redirects=False,
    )
    assert again.status_code == 422 and "only a failed one can be retried" in again.text


def test_editing_changes_the_endpoint_and_a_bad_url_changes_nothing(
    signed_in: TestClient, services: Services, receiver: Receiver
) -> None:
    add(signed_in, receiver.url, ["subscriber.created"])
    endpoint = only_endpoint(services)
    page_path = f"{HOME}/{endpoint.id}"
    saved = signed_in.post(
        page_path,
        data={
            "url": receiver.url + "/v2",
            "events": ["send.started", "send.finished"],
            "description": "Warehouse",
            "csrf": csrf(signed_in),
        },
        follow_redirects=False,
    )
    assert saved.status_code == 303
    changed = only_endpoint(services)
    assert changed.url == receiver.url + "/v2"
    assert changed.events == ["send.started", "send.finished"]
    assert changed.description == "Warehouse" and not changed.enabled, "box left unticked"
    assert '<span class="badge paused">disabled</span>' in signed_in.get(HOME).text

    refused = signed_in.post(
        page_path,
        data={
            "url": "https://hooks.example.com/#part",
            "events": ["send.started"],
            "enabled": "on",
            "csrf": csrf(signed_in),
        },
    )
    assert refused.status_code == 422 and "URL: must not have a #fragment." in refused.text
    kept = only_endpoint(services)
    assert (kept.url, kept.events, kept.enabled) == (changed.url, changed.events, False)


def test_deleting_needs_the_confirmation_and_takes_the_deliveries_along(
    signed_in: TestClient, services: Services, receiver: Receiver
) -> None:
    add(signed_in, receiver.url, ["subscriber.created"])
    endpoint = only_endpoint(services)
    page_path = f"{HOME}/{endpoint.id}"
    signed_in.post(f"{page_path}/test", data={"csrf": csrf(signed_in)})
    page_when(signed_in, page_path, '<span class="badge delivered">delivered</span>')

    assert f'href="{page_path}/delete"' in signed_in.get(page_path).text
    confirm = signed_in.get(f"{page_path}/delete")
    assert confirm.status_code == 200 and "This cannot be undone" in confirm.text
    assert count_rows(services, WebhookEndpoint) == 1, "asking deletes nothing"

    done = signed_in.post(
        f"{page_path}/delete", data={"csrf": csrf_of(confirm.text)}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"] == f"{HOME}?notice=deleted"
    assert count_rows(services, WebhookEndpoint) == 0
    assert count_rows(services, WebhookDelivery) == 0
    assert signed_in.get(page_path).status_code == 404


def test_not_signed_in_is_sent_to_the_sign_in_page(client: TestClient) -> None:
    for path in (HOME, f"{HOME}/1", f"{HOME}/1/delete"):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/admin/", path


def test_an_id_no_row_can_have_is_not_found(signed_in: TestClient, services: Services) -> None:
    past_64_bits = "9223372036854775808"
    assert signed_in.get(f"{HOME}/{past_64_bits}").status_code == 404
    assert signed_in.get(f"{HOME}/{past_64_bits}/delete").status_code == 404
    retry = f"{HOME}/1/deliveries/{past_64_bits}/retry"
    assert signed_in.post(retry, data={"csrf": csrf(signed_in)}).status_code == 404
    assert signed_in.get("/admin/sends/99999999999999999999").status_code == 404
