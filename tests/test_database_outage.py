"""The database going away: every route answers 503 with Retry-After (a page for people,
JSON for scripts and the editors' API), never a plain 500 and never a false success; and
/readyz says so. Real outages: a PostgreSQL database renamed away under the running app,
a port where nothing listens, a SQLite file that can no longer be opened."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from mailer import config, db
from mailer.app import create_app
from mailer.clock import FrozenClock
from mailer.models import ConsentEvent, Subscriber
from mailer.services import Services, build
from mailer.tokens import Purpose
from tests.admin import sign_in
from tests.conftest import PG_ADMIN, count_rows, free_port

pytestmark = pytest.mark.both_databases
"""Each database goes away in its own way: both databases."""

READER = "rita.reader@example.com"
POSTMARK_AUTH = "Basic " + base64.b64encode(b"postmark-hook:postmark-secret").decode()


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "bounces": {"postmark_username": "postmark-hook", "postmark_password": "postmark-secret"}
    }


@pytest.fixture
def quiet_client(services: Services) -> Iterator[TestClient]:
    """The app without its sender and scheduler (they would only retry the dead database)."""
    app = create_app(services, run_sender=False, run_scheduler=False)
    with TestClient(app, client=("203.0.113.7", 50000)) as client:
        yield client


class Outage:
    """Makes the running app's database unusable and back: PostgreSQL's is renamed with
    its connections ended; SQLite's file is moved and a directory put in its place (the
    pool closed, as a restart would)."""

    def __init__(self, services: Services, database_url: str, db_kind: str) -> None:
        self.services = services
        self.db_kind = db_kind
        self.name = make_url(database_url).database or ""
        self.away = False

    def start(self) -> None:
        if self.db_kind == "postgresql":
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (self.name,),
                )
                admin.execute(f'ALTER DATABASE "{self.name}" RENAME TO "{self.name}_away"')
        else:
            self.services.engine.dispose()
            path = Path(self.name)
            path.rename(path.with_suffix(".away"))
            path.mkdir()
        self.away = True

    def end(self) -> None:
        if not self.away:
            return
        self.services.engine.dispose()
        if self.db_kind == "postgresql":
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{self.name}_away" RENAME TO "{self.name}"')
        else:
            path = Path(self.name)
            path.rmdir()
            path.with_suffix(".away").rename(path)
        self.away = False


@pytest.fixture
def outage(services: Services, database_url: str, db_kind: str) -> Iterator[Outage]:
    happening = Outage(services, database_url, db_kind)
    yield happening
    happening.end()


def assert_unavailable(answer: Any, kind: str) -> None:
    assert answer.status_code == 503, (answer.request.url, answer.status_code, answer.text[:300])
    assert int(answer.headers["Retry-After"]) > 0
    content_type = answer.headers["content-type"]
    if kind == "json":
        assert content_type.startswith("application/json")
        assert "try again" in answer.json()["detail"]
    elif kind == "html":
        assert content_type.startswith("text/html")
        assert "try again" in answer.text.lower()
        assert "Traceback" not in answer.text
    else:
        assert content_type.startswith("application/javascript")


def test_every_route_answers_503_with_retry_after_while_the_database_is_away(
    quiet_client: TestClient,
    services: Services,
    api_key: str,
    editor_account: None,
    outage: Outage,
) -> None:
    client = quiet_client
    assert sign_in(client).status_code == 303
    signed_in_cookie = dict(client.cookies)
    client.cookies.clear()
    confirm = services.signer.sign(Purpose.confirm, {"c": 1})
    leave = services.signer.sign(Purpose.unsubscribe, {"s": 1})
    outage.start()

    json_calls = [
        ("POST", "/subscribe", {"json": {"email": READER}}),
        (
            "POST",
            "/subscribe",
            {"data": {"email": READER}, "headers": {"Accept": "application/json"}},
        ),
        ("GET", "/api/v1/lists", {"headers": {"Authorization": f"Bearer {api_key}"}}),
        (
            "POST",
            "/api/v1/lists",
            {"json": {"slug": "x", "name": "X"}, "headers": {"Authorization": f"Bearer {api_key}"}},
        ),
        ("GET", "/api/v1/lists", {"cookies": signed_in_cookie}),
        (
            "POST",
            "/webhooks/bounces/postmark",
            {
                "json": {"RecordType": "Bounce", "Email": READER, "Type": "HardBounce"},
                "headers": {"Authorization": POSTMARK_AUTH},
            },
        ),
    ]
    html_calls = [
        ("POST", "/subscribe", {"data": {"email": READER}}),
        ("POST", "/subscribe", {"files": {"email": (None, READER)}}),
        ("GET", "/forms/default", {}),
        ("GET", "/forms/default/thanks", {}),
        ("GET", f"/confirm/{confirm}", {}),
        ("POST", f"/confirm/{confirm}", {}),
        ("GET", f"/unsubscribe/{leave}", {}),
        ("POST", f"/unsubscribe/{leave}", {"data": {"List-Unsubscribe": "One-Click"}}),
        ("GET", "/archive/news", {}),
        ("GET", "/admin/", {"cookies": signed_in_cookie}),
        ("GET", "/admin/subscribers", {"cookies": signed_in_cookie}),
    ]
    for kind, calls in (("json", json_calls), ("html", html_calls)):
        for method, path, extra in calls:
            cookies = extra.pop("cookies", None)
            if cookies:
                client.cookies.update(cookies)
            assert_unavailable(client.request(method, path, follow_redirects=False, **extra), kind)
            client.cookies.clear()
    assert_unavailable(client.get("/forms/default/embed.js"), "js")
    ready = client.get("/readyz")
    assert ready.status_code == 503


def test_a_signup_while_the_database_is_away_is_not_reported_accepted_and_leaves_nothing(
    quiet_client: TestClient, services: Services, outage: Outage
) -> None:
    before = (count_rows(services, Subscriber), count_rows(services, ConsentEvent))
    outage.start()
    for body in ({"json": {"email": READER}}, {"data": {"email": READER}}):
        answer = quiet_client.post("/subscribe", follow_redirects=False, **body)
        assert answer.status_code == 503, answer.text[:300]
    outage.end()
    assert (count_rows(services, Subscriber), count_rows(services, ConsentEvent)) == before
    assert quiet_client.post("/subscribe", json={"email": READER}).status_code == 202


@pytest.fixture
def unreachable(tmp_path: Path, clock: FrozenClock) -> Iterator[Services]:
    """An app configured for a PostgreSQL server that is not there (nothing listens)."""
    settings = config.load(
        data_dir=str(tmp_path / "var"),
        secret_key="s" * 48,
        public_url="http://testserver",
        database={"url": f"postgresql://postgres@127.0.0.1:{free_port()}/mailer"},
        smtp={"transport": "maildir"},
    )
    services = build(settings, clock=clock)
    yield services
    services.engine.dispose()


def test_a_database_server_that_cannot_be_reached_gets_503_not_500(
    unreachable: Services,
) -> None:
    app = create_app(unreachable, run_sender=False, run_scheduler=False)
    with TestClient(app) as client:
        assert_unavailable(client.post("/subscribe", json={"email": READER}), "json")
        assert_unavailable(client.get("/forms/default"), "html")
        assert_unavailable(
            client.get("/api/v1/lists", headers={"Authorization": "Bearer some-key"}), "json"
        )
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200


def test_readyz_is_not_ready_when_the_sqlite_file_was_lost(
    tmp_path: Path, clock: FrozenClock
) -> None:
    """SQLite makes an empty file where the lost one was: it answers SELECT 1, but holds
    no tables, so the server is not ready (and readers get 503, not 500)."""
    path = tmp_path / "mailer.db"
    settings = config.load(
        data_dir=str(tmp_path / "var"),
        secret_key="s" * 48,
        public_url="http://testserver",
        database={"url": f"sqlite:///{path}"},
        smtp={"transport": "maildir"},
    )
    services = build(settings, clock=clock)
    db.upgrade(services.engine)
    app = create_app(services, run_sender=False, run_scheduler=False)
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        services.engine.dispose()
        path.unlink()
        assert client.get("/readyz").status_code == 503
        assert_unavailable(client.post("/subscribe", json={"email": READER}), "json")
        assert_unavailable(client.get("/forms/default"), "html")
    services.engine.dispose()
