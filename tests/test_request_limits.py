"""Request bodies stay within bounds on every route: a size cap (413), a JSON nesting
depth and number range (4xx), and the editors' API decides who calls before it reads a
byte of the body (401). Nothing refused is written."""

from __future__ import annotations

import asyncio
import base64
import json
import select
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from mailer import config
from mailer.app import create_app
from mailer.models import BounceEvent, ConsentEvent, MailingList, Subscriber
from mailer.services import Services
from mailer.tokens import Purpose
from tests.admin import csrf_of, sign_in
from tests.conftest import count_rows

READER = "rita.reader@example.com"
POSTMARK_USER = "postmark-hook"
POSTMARK_PASSWORD = "postmark-secret"
POSTMARK_AUTH = (
    "Basic " + base64.b64encode(f"{POSTMARK_USER}:{POSTMARK_PASSWORD}".encode()).decode()
)
READERS_CAP = 40_000
EDITORS_CAP = 300_000
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "http": {"max_body_bytes": READERS_CAP, "max_editor_body_bytes": EDITORS_CAP},
        "bounces": {"postmark_username": POSTMARK_USER, "postmark_password": POSTMARK_PASSWORD},
    }


def rows(services: Services) -> dict[str, int]:
    """How many rows the refused requests could have written."""
    return {
        model.__name__: count_rows(services, model)
        for model in (Subscriber, ConsentEvent, MailingList, BounceEvent)
    }


def reader_token(client: TestClient, services: Services) -> str:
    """An unsubscribe link's token for a reader who signed up."""
    assert client.post("/subscribe", json={"email": READER}).status_code == 202
    found = client.get("/api/v1/subscribers", params={"email": READER}).json()
    return services.signer.sign(Purpose.unsubscribe, {"s": int(found[0]["id"])})


# ---- nesting and numbers -----------------------------------------------------------------


def nested_bodies(field: str, rest: str) -> list[str]:
    """Deep JSON in several spellings: bare arrays, objects, mixed, spaced, and deep inside
    a field of an otherwise good body (`rest` is that body's other members)."""
    return [
        "[" * 5000 + "]" * 5000,
        '{"a":' * 2000 + "1" + "}" * 2000,
        '[{"a":' * 1000 + "1" + "}]" * 1000,
        "[ " * 3000 + "]" * 3000,
        "{" + rest + f'"{field}":' + "[" * 3000 + "]" * 3000 + "}",
        "{" + rest + f'"{field}":' + "[" * 40 + "]" * 40 + "}",
        "[" * 5000,
    ]


def test_deep_json_anywhere_is_refused_with_a_4xx_and_writes_nothing(
    editor: TestClient, services: Services
) -> None:
    token = reader_token(editor, services)
    routes: list[tuple[str, str, dict[str, str], str, str]] = [
        ("POST", "/subscribe", JSON, "lists", f'"email":"{READER}",'),
        ("POST", f"/unsubscribe/{token}", JSON, "lists", '"action":"preferences",'),
        ("POST", "/api/v1/lists", JSON, "description", '"slug":"deep","name":"Deep",'),
        ("PATCH", "/api/v1/lists/news", JSON, "description", ""),
        ("POST", "/api/v1/digests", JSON, "topics", '"list":"news","name":"Deep",'),
        (
            "POST",
            "/webhooks/bounces/postmark",
            {**JSON, "Authorization": POSTMARK_AUTH},
            "Email",
            '"RecordType":"Bounce","Type":"HardBounce",',
        ),
    ]
    before = rows(services)
    for method, path, headers, field, rest in routes:
        for body in nested_bodies(field, rest):
            answer = editor.request(method, path, content=body, headers=headers)
            assert answer.status_code in (400, 422), (path, body[:60], answer.text[:200])
    assert rows(services) == before


def test_brackets_inside_strings_are_text_not_nesting(client: TestClient) -> None:
    body = json.dumps({"email": READER, "name": "[{" * 200 + '\\"]'})
    assert client.post("/subscribe", content=body, headers=JSON).status_code == 202


@pytest.mark.parametrize(
    "number", ["1e999", "-1e999", "NaN", "Infinity", "-Infinity", "1" + "0" * 30, "9" * 5000]
)
def test_numbers_past_what_a_field_holds_are_refused_and_write_nothing(
    editor: TestClient, services: Services, number: str
) -> None:
    before = rows(services)
    for method, path, body in [
        ("POST", "/api/v1/lists", '{"slug":"n","name":"N","welcome_enabled":%s}'),
        ("POST", "/api/v1/digests", '{"list":"news","name":"N","max_articles":%s}'),
        ("PATCH", "/api/v1/lists/news", '{"description":%s}'),
        ("POST", "/subscribe", '{"email":%s}'),
    ]:
        answer = editor.request(method, path, content=body % number, headers=JSON)
        assert answer.status_code in (400, 422), (path, answer.text[:200])
    assert rows(services) == before


# ---- size ------------------------------------------------------------------------------------


def test_a_body_over_the_cap_is_413_on_every_kind_of_route_and_writes_nothing(
    signed_in: TestClient, services: Services
) -> None:
    client = signed_in
    token = reader_token(client, services)
    confirm = services.signer.sign(Purpose.confirm, {"c": 1})
    csrf = csrf_of(client.get("/admin/forms").text)
    padding = "x" * READERS_CAP
    routes = [
        ("POST", "/subscribe", {"email": READER, "name": padding}),
        ("POST", f"/unsubscribe/{token}", {"List-Unsubscribe": "One-Click", "pad": padding}),
        ("POST", f"/confirm/{confirm}", {"pad": padding}),
        ("POST", "/webhooks/bounces/postmark", {"pad": padding}),
        ("POST", "/admin/forms", {"csrf": csrf, "slug": "big", "pad": padding * 8}),
        ("POST", "/admin/login", {"csrf": csrf, "email": READER, "pad": padding * 8}),
        ("POST", "/api/v1/lists", {"slug": "big", "name": "Big", "description": padding * 8}),
    ]
    before = rows(services)
    for method, path, fields in routes:
        headers = {"Authorization": POSTMARK_AUTH} if "webhooks" in path else {}
        as_form = client.request(method, path, data=fields, headers=headers)
        as_json = client.request(method, path, json=fields, headers=headers)
        for answer in (as_form, as_json):
            assert answer.status_code == 413, (path, answer.status_code, answer.text[:200])
    assert rows(services) == before


def test_only_a_signed_in_editor_may_send_an_editor_sized_body_to_the_admin_pages(
    client: TestClient, signed_in_elsewhere: TestClient
) -> None:
    between = "x" * (READERS_CAP + 1000)  # past the readers' cap, within the editors'
    assert len(between) < EDITORS_CAP
    csrf = csrf_of(client.get("/admin/").text)
    for path in ("/admin/login", "/admin/forms", "/admin/digests", "/admin/nowhere"):
        fields = {"csrf": csrf, "email": READER, "password": "wrong", "pad": between}
        for answer in (
            client.post(path, data=fields),
            client.post(path, json=fields),
            client.post(path, content=between.encode(), headers={"Cookie": "mailer_session=x"}),
        ):
            assert answer.status_code == 413, (path, answer.status_code, answer.text[:200])

    editor = signed_in_elsewhere
    csrf = csrf_of(editor.get("/admin/forms").text)
    answer = editor.post("/admin/forms", data={"csrf": csrf, "slug": "", "pad": between})
    assert answer.status_code != 413, answer.text[:200]


@pytest.fixture
def signed_in_elsewhere(services: Services, editor_account: None) -> Iterator[TestClient]:
    """A second client of the same app, signed in as an editor."""
    with TestClient(create_app(services, run_sender=False, run_scheduler=False)) as other:
        sign_in(other)
        yield other


def test_a_body_within_the_editors_cap_still_reaches_the_api(editor: TestClient) -> None:
    long_template = "<p>{{ list.name }}</p>\n" + "<p>The same paragraph.</p>\n" * (
        READERS_CAP // 10
    )
    digest = {
        "list": "news",
        "name": "Long",
        "schedule": "0 7 * * *",
        "html_template": long_template,
    }
    assert len(long_template) > READERS_CAP
    created = editor.post("/api/v1/digests", json=digest)
    assert created.status_code == 201, created.text[:300]


class CountingBody:
    """A request body made as it is read, counting how much the server took."""

    def __init__(self, total: int, chunk: int = 1 << 20) -> None:
        self.total = total
        self.chunk = chunk
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.total:
            self.sent += self.chunk
            yield b" " * self.chunk


def over_asgi(
    services: Services, method: str, path: str, headers: dict[str, str], body: Any
) -> int:
    """One request straight to the app's ASGI interface, its body streamed from `body`."""
    app = create_app(services, run_sender=False, run_scheduler=False)

    async def call() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            answer = await http.request(method, path, headers=headers, content=body)
            return answer.status_code

    return asyncio.run(call())


API_CALLS = [
    ("POST", "/api/v1/lists"),
    ("PATCH", "/api/v1/lists/news"),
    ("POST", "/api/v1/articles"),
    ("POST", "/api/v1/digests/1/send"),
    ("POST", "/api/v1/webhooks"),
    ("DELETE", "/api/v1/subscribers/1"),
]


def test_a_chunked_body_over_the_cap_is_413_without_being_read_to_its_end(
    services: Services, api_key: str
) -> None:
    for method, path in [*API_CALLS, ("POST", "/subscribe"), ("POST", "/api/v1/nowhere")]:
        body = CountingBody(100 << 20, chunk=64 << 10)
        headers = {**JSON, "Authorization": f"Bearer {api_key}"}
        assert over_asgi(services, method, path, headers, body) == 413, path
        assert body.sent <= 2 * EDITORS_CAP, (path, body.sent)


@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Cookie": "mailer_session=forged"},
    ],
)
def test_the_api_answers_401_before_reading_a_body_sent_without_a_good_key(
    services: Services, credentials: dict[str, str]
) -> None:
    for method, path in API_CALLS:
        body = CountingBody(150 << 20)
        assert over_asgi(services, method, path, {**JSON, **credentials}, body) == 401, path
        assert body.sent <= 1 << 20, (path, body.sent)


def test_a_signed_in_editor_without_the_csrf_header_is_refused_before_the_body(
    signed_in: TestClient, services: Services
) -> None:
    cookie = f"mailer_session={signed_in.cookies.get('mailer_session')}"
    body = CountingBody(150 << 20)
    status = over_asgi(services, "POST", "/api/v1/lists", {**JSON, "Cookie": cookie}, body)
    assert status == 403
    assert body.sent <= 1 << 20


def send_until_answered(port: int, head: str, total: int, chunked: bool) -> tuple[bytes, int]:
    """POST over a real socket: the head, then body pieces until the server answers or the
    body is all sent; the first bytes of the answer and how much body went out."""
    piece = b" " * (64 << 10)
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        while sent < total:
            readable, writable, _ = select.select([sock], [sock], [], 10)
            if readable or not writable:
                break
            frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        return sock.recv(200), sent


@pytest.mark.parametrize("chunked", [False, True])
def test_150_megabytes_without_a_key_get_401_before_they_are_sent(
    live_app: str, app_port: int, chunked: bool
) -> None:
    total = 150 << 20
    for path in ("/api/v1/lists", "/api/v1/articles", "/api/v1/webhooks"):
        length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{length}\r\n\r\n"
        )
        answer, sent = send_until_answered(app_port, head, total, chunked)
        assert answer.startswith(b"HTTP/1.1 401"), answer
        assert sent < total // 10, f"{sent} bytes went out before the answer"


# ---- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["max_body_bytes", "max_editor_body_bytes", "max_json_depth"])
@pytest.mark.parametrize("value", [0, -1])
def test_a_bound_of_zero_or_less_is_refused_at_start_up(key: str, value: int) -> None:
    with pytest.raises(config.ConfigError, match=f"http.{key}"):
        config.load(http={key: value})
