"""The whole HTTP API, readers' routes and /api/v1, driven by schemathesis from /openapi.json:
no input gets a server error, and every answer is one the schema declares, in its shape.

The app is built once for this module, on its own SQLite file with mail going to a Maildir
(no sender runs), and the schema is read from it over ASGI.
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from mailer import apikeys, config, db
from mailer.app import create_app
from mailer.db import session_scope
from mailer.services import build
from tests.conftest import SECRET

FAR_FUTURE = "9999-12-31T23:59:59-23:59"
"""Later than any UTC time a database column holds."""

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]

_data_dir = Path(tempfile.mkdtemp(prefix="mailer-fuzz-"))
atexit.register(shutil.rmtree, _data_dir, ignore_errors=True)  # also when nothing here runs
_services = build(
    config.load(
        data_dir=str(_data_dir / "var"),
        secret_key=SECRET,
        public_url="http://testserver",
        database={"url": f"sqlite:///{_data_dir / 'mailer.db'}"},
        smtp={"transport": "maildir"},
        network={"allowed_private_networks": ["127.0.0.0/8"]},  # the closed feed port
    )
)
db.upgrade(_services.engine)
with session_scope(_services.engine) as _session:
    API_KEY = apikeys.create(_session, "schema fuzz", _services.clock.now())

_app = create_app(_services, run_sender=False, run_scheduler=False)
schema = schemathesis.openapi.from_asgi("/openapi.json", _app)

CLOSED_PORT = "127.0.0.1:9"
"""Nothing listens here: a feed poll fails at once, as a refused connection (a webhook
goes to a host in .invalid, which never resolves)."""


def _seed() -> None:
    """One of each resource (ids 1), so that the ids the fuzzer tries first exist."""
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(_app) as client:
        created = [
            client.post("/subscribe", json={"email": "fuzz.reader@example.com"}),
            client.post(
                "/api/v1/articles",
                json={
                    "url": "https://news.example.com/fuzz-seed",
                    "title": "Seed",
                    "topics": ["world"],
                    "published_at": _services.clock.now().isoformat(),
                },
                headers=auth,
            ),
            client.post(
                "/api/v1/digests",
                json={"list": "news", "name": "Seed digest", "schedule": "0 7 * * *"},
                headers=auth,
            ),
            client.post("/api/v1/digests/1/send", headers=auth),
            client.post(
                "/api/v1/feeds", json={"url": f"http://{CLOSED_PORT}/feed.xml"}, headers=auth
            ),
            client.post(
                "/api/v1/webhooks",
                json={"url": "https://hooks.invalid/hook", "events": ["send.started"]},
                headers=auth,
            ),
        ]
    for answer in created:
        assert answer.status_code in (201, 202), answer.text


_seed()


@pytest.fixture(scope="module", autouse=True)
def _close_the_database() -> Iterator[None]:
    yield
    _services.engine.dispose()


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_input_gets_a_server_error_or_an_undeclared_answer(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {API_KEY}"}, checks=CHECKS)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/api/v1/subscribers/9223372036854775808", None, 404),
        ("POST", "/api/v1/sends/-9223372036854775809/cancel", None, 404),
        ("GET", "/api/v1/digests/99999999999999999999999/preview", None, 404),
        ("GET", "/api/v1/sends/%C2%B2", None, 422),
        ("GET", "/api/v1/subscribers?offset=9223372036854775808", None, 422),
        ("GET", "/api/v1/articles?offset=9223372036854775808", None, 422),
        ("GET", "/archive/news/9223372036854775808", None, 404),
        ("GET", "/api/v1/articles?topic=%3A", None, 200),
        ("PATCH", "/api/v1/lists/news", {"welcome_enabled": None, "description": None}, 200),
        ("PATCH", "/api/v1/digests/{digest}", {"name": None, "enabled": None, "topics": None}, 200),
        ("POST", "/api/v1/digests", {"list": "news", "name": "N", "send_at": "2030-01-01"}, 422),
        (
            "POST",
            "/api/v1/articles",
            {
                "url": "https://x.example/a",
                "title": "A",
                "published_at": "9999-12-31T23:59:59-23:59",
            },
            422,
        ),
    ],
)
def test_inputs_that_once_crashed_the_server_get_a_clear_answer(
    method: str, path: str, body: dict[str, Any] | None, status: int
) -> None:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(_app) as client:
        story = {
            "url": "https://news.example.com/fuzz-story",
            "title": "A story",
            "topics": ["world"],
            "published_at": "2026-01-01T00:00:00Z",
        }
        assert client.post("/api/v1/articles", json=story, headers=auth).status_code in (200, 201)
        digest = {"list": "news", "name": f"Fuzz digest {len(path)}", "schedule": "0 7 * * *"}
        created = client.post("/api/v1/digests", json=digest, headers=auth)
        assert created.status_code == 201, created.text
        path = path.replace("{digest}", str(created.json()["id"]))
        answer = client.request(method, path, json=body, headers=auth)
    assert answer.status_code == status, answer.text
    if "topic=" in path:
        assert answer.json() == [], "a topic with no letters matches no article"


# ---- bodies no schema describes: nested too deep, numbers past range, too large ----------

_SETTINGS = _services.settings.http
BODY_OPERATIONS = sorted(
    (method.upper(), re.sub(r"\{[^}]+\}", "1", path))
    for path, operations in _app.openapi()["paths"].items()
    for method in operations
    if method in ("post", "put", "patch")
)
"""Every operation that takes a body, with 1 for each path parameter."""

OPENERS = ["[", '{"a":', '[{"b":', "[ ", '{"email":[']


def _closer(opener: str) -> str:
    return "".join({"[": "]", "{": "}"}[c] for c in reversed(opener) if c in "[{")


@st.composite
def nested_json(draw: st.DrawFn) -> tuple[str, int]:
    """A JSON body nested `depth` levels (shallow, around the limit, or far past it), bare
    or inside a field of an object, sometimes with a number no field holds at its core."""
    opener = draw(st.sampled_from(OPENERS))
    depth = draw(
        st.one_of(
            st.integers(1, _SETTINGS.max_json_depth),
            st.integers(_SETTINGS.max_json_depth + 1, _SETTINGS.max_json_depth + 3),
            st.integers(900, 20_000),
        )
    )
    core = draw(st.sampled_from(["1", '"x"', "1e999", "NaN", "-Infinity", "9" * 40]))
    body = opener * depth + core + _closer(opener) * depth
    if draw(st.booleans()):
        body = '{"email": "fuzz@example.com", "lists": ' + body + "}"
        depth += 1
    return body, depth


@pytest.mark.parametrize(("method", "path"), BODY_OPERATIONS)
@settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(nested=nested_json())
def test_nested_json_and_wild_numbers_get_a_clear_4xx(
    method: str, path: str, nested: tuple[str, int]
) -> None:
    body, depth = nested
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    with TestClient(_app) as client:
        answer = client.request(method, path, content=body, headers=headers)
    assert answer.status_code < 500, (method, path, body[:80], answer.text[:200])
    if depth > _SETTINGS.max_json_depth:
        assert answer.status_code == 400, (method, path, body[:80], answer.text[:200])


CONTENT_TYPES = [
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=fuzz",
    "text/plain",
]


@pytest.mark.parametrize(("method", "path"), BODY_OPERATIONS)
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(
    over=st.integers(1, 70_000),
    content_type=st.sampled_from(CONTENT_TYPES),
    declared=st.booleans(),
)
def test_a_body_past_the_cap_gets_413_declared_or_streamed(
    method: str, path: str, over: int, content_type: str, declared: bool
) -> None:
    editors = path.startswith(("/api/", "/admin/"))
    cap = _SETTINGS.max_editor_body_bytes if editors else _SETTINGS.max_body_bytes
    body = b"a=" + b"x" * (cap + over)
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": content_type}
    content: Any = (
        body if declared else iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
    )
    with TestClient(_app) as client:
        answer = client.request(method, path, content=content, headers=headers)
    assert answer.status_code == 413, (method, path, answer.text[:200])
