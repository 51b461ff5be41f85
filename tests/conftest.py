"""Shared fixtures: a real SMTP server (aiosmtpd), real SQLite files and a real PostgreSQL.

An app-level test (one that asks for a database through `db_kind`, `database_url`,
`services`, `client`...) runs on SQLite. It runs on PostgreSQL too when it is marked
`@pytest.mark.both_databases` (a module opts in whole with `pytestmark`), and on
PostgreSQL only with `@pytest.mark.parametrize("db_kind", ["postgresql"])`.

A test must opt in to PostgreSQL when the SQL on its path differs by dialect or
depends on how the database locks, orders or compares:

- claims and leases (`FOR UPDATE SKIP LOCKED`): the outbox, batches, webhook
  deliveries, scheduling (two schedulers, two sends at once), workers;
- row locks and unique-constraint races (`FOR UPDATE`, `ON CONFLICT DO NOTHING`):
  signup, suppression, provider notification replays, imports (bulk inserts);
- migrations, the consent ledger's triggers (append-only guard) and hash chain,
  erasure;
- queries that group or compare by time (stats, the dashboard, `since` filters, expiry
  and purges), aggregate `FILTER`s, JSON stored as text;
- the database going away (outage).

Request parsing, validation answers, pages, headers, tokens, templates, the browser
and admin page rendering run on SQLite only. PostgreSQL must be reachable: the tests
fail, not skip, when it is not, unless MAILER_TEST_POSTGRES=skip is set on a machine
that has none.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from mailer import apikeys, config, db
from mailer.app import create_app
from mailer.clock import FrozenClock
from mailer.db import session_scope
from mailer.services import Services, build
from tests.databases import PgDatabases

pytest_plugins = ["tests.admin", "tests.bounces", "tests.browser", "tests.peers"]

PG_ADMIN = os.environ.get("MAILER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_START = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
"""Where the test clock starts: a Tuesday, so a weekday schedule advanced by a day stays on
a weekday whatever day the suite runs."""
SECRET = "test-secret-key-that-is-long-enough-for-production-0123456789"


# ---- SMTP ----------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: tuple[str, int] = ("", 0)
    """The client's address and port: one per SMTP connection."""
    mail_options: list[str] = field(default_factory=list)
    """The MAIL FROM parameters the client gave (SMTPUTF8, ...)."""
    at: float = field(default_factory=time.monotonic)

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class RecordingHandler:
    """Records every accepted message; `replies` maps an address to an RCPT reply, and
    `data_replies` are answers to the next DATA commands, one each, instead of accepting."""

    messages: list[Received] = field(default_factory=list)
    replies: dict[str, str] = field(default_factory=dict)
    data_replies: deque[str] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self.replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        with self.lock:
            if self.data_replies:
                return self.data_replies.popleft()
            self.messages.append(
                Received(
                    envelope.mail_from or "",
                    list(envelope.rcpt_tos),
                    bytes(envelope.original_content or b""),
                    tuple(session.peer) if session.peer else ("", 0),  # type: ignore[arg-type]
                    list(envelope.mail_options),
                )
            )
        return "250 Message accepted"


class SmtpSink:
    """A relay on loopback; `smtputf8` makes it offer SMTPUTF8 (RFC 6531), which it does
    not by default."""

    def __init__(self, smtputf8: bool = False) -> None:
        self.smtputf8 = smtputf8
        self.handler = RecordingHandler()
        self.port = free_port()
        self.controller: Controller | None = None
        self.running = False

    def start(self) -> None:
        if not self.running:
            # A stopped controller cannot be started again: a new one on the same port.
            self.controller = Controller(
                self.handler,
                hostname="127.0.0.1",
                port=self.port,
                enable_SMTPUTF8=self.smtputf8,
            )
            self.controller.start()
            self.running = True

    def stop(self) -> None:
        """Stop accepting connections (a relay that is down); safe to call twice."""
        if self.running and self.controller is not None:
            self.controller.stop()
            self.running = False

    @property
    def messages(self) -> list[Received]:
        return list(self.handler.messages)

    def to(self, address: str) -> list[Received]:
        return [m for m in self.messages if address in m.rcpt_tos]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.handler.messages) >= count:
                return self.messages
            time.sleep(0.02)
        raise AssertionError(f"expected {count} messages, got {len(self.handler.messages)}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _running_sink(smtputf8: bool = False) -> Iterator[SmtpSink]:
    sink = SmtpSink(smtputf8)
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
def smtp(request: pytest.FixtureRequest) -> Iterator[SmtpSink]:
    """The relay; parametrize it indirectly with True for one that offers SMTPUTF8."""
    yield from _running_sink(bool(getattr(request, "param", False)))


@pytest.fixture
def second_relay() -> Iterator[SmtpSink]:
    """Another SMTP server, for tests with two relays."""
    yield from _running_sink()


# ---- databases -----------------------------------------------------------------------


def _pg_reachable() -> bool:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _pg_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database that per-test databases are copied from."""
    if not _pg_reachable():
        if os.environ.get("MAILER_TEST_POSTGRES") == "skip":
            pytest.skip("PostgreSQL unreachable and MAILER_TEST_POSTGRES=skip")
        pytest.fail(
            f"PostgreSQL is unreachable at {PG_ADMIN}; start it or set MAILER_TEST_POSTGRES=skip"
        )
    name = f"mailer_tpl_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    settings = config.load(database={"url": _pg_url(name)}, secret_key=SECRET)
    engine = db.make_engine(settings)
    db.upgrade(engine)
    engine.dispose()
    yield name
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_databases(pg_template: str) -> Iterator[PgDatabases]:
    """Fresh copies of the template, made and dropped in the background."""
    databases = PgDatabases(PG_ADMIN, pg_template)
    yield databases
    databases.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "mailer.db"
    settings = config.load(database={"url": f"sqlite:///{path}"}, secret_key=SECRET)
    engine = db.make_engine(settings)
    db.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def db_kind(request: pytest.FixtureRequest) -> str:
    """ "sqlite" or "postgresql", as pytest_generate_tests chose for this test."""
    return str(request.param)


def _parametrizes_db_kind(metafunc: pytest.Metafunc) -> bool:
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        if isinstance(names, str):
            names = [name.strip() for name in names.split(",")]
        if "db_kind" in names:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """SQLite for every test on a database; PostgreSQL too for those marked
    `both_databases` (see the module docstring). An explicit parametrization of `db_kind`
    is left alone."""
    if "db_kind" not in metafunc.fixturenames or _parametrizes_db_kind(metafunc):
        return
    both = metafunc.definition.get_closest_marker("both_databases") is not None
    metafunc.parametrize("db_kind", ["sqlite", "postgresql"] if both else ["sqlite"], indirect=True)


@pytest.fixture
def database_url(db_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    if db_kind == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "mailer.db"
        shutil.copy(template, path)
        yield f"sqlite:///{path}"
        return
    databases: PgDatabases = request.getfixturevalue("pg_databases")
    name = databases.take()
    yield _pg_url(name)
    databases.give_back(name)


# ---- the app -------------------------------------------------------------------------


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Tests override this to change settings (nested dicts per section)."""
    return {}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@pytest.fixture
def settings(
    database_url: str, smtp: SmtpSink, tmp_path: Path, settings_overrides: dict[str, Any]
) -> config.Settings:
    base = {
        "data_dir": str(tmp_path / "var"),
        "secret_key": SECRET,
        "public_url": "http://testserver",
        "database": {"url": database_url, "pool_size": 5},
        "smtp": {"transport": "smtp", "host": "127.0.0.1", "port": smtp.port, "timeout_seconds": 5},
        "mail": {
            "from_address": "news@example.org",
            "from_name": "Example News",
            "site_name": "Example News",
            "postal_address": "1 Press Street, Berlin",
        },
        "sender": {"poll_interval_seconds": 0.05, "retry_base_seconds": 1},
    }
    return config.load(**_merge(base, settings_overrides))


@pytest.fixture
def clock() -> FrozenClock:
    """A clock frozen on a fixed Tuesday morning, so tests that advance it by days never
    depend on the weekday they run on."""
    return FrozenClock(TEST_START)


@pytest.fixture
def services(settings: config.Settings, clock: FrozenClock) -> Iterator[Services]:
    built = build(settings, clock=clock)
    yield built
    built.engine.dispose()


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    """The app over HTTP (in-process), with its sender delivering to the SMTP sink."""
    app = create_app(services, run_scheduler=False)
    with TestClient(app, client=("203.0.113.7", 50000)) as test_client:
        yield test_client


@pytest.fixture
def api_key(services: Services) -> str:
    with session_scope(services.engine) as session:
        return apikeys.create(session, "tests", services.clock.now())


@pytest.fixture
def editor(client: TestClient, api_key: str) -> TestClient:
    """The same client, authenticated as an editor."""
    client.headers["Authorization"] = f"Bearer {api_key}"
    return client


def one_article(editor: TestClient, services: Services) -> None:
    """One article, published now, for a digest to carry."""
    answer = editor.post(
        "/api/v1/articles",
        json={
            "url": "https://news.example.com/story",
            "title": "A story",
            "topics": ["world"],
            "published_at": services.clock.now().isoformat(),
        },
    )
    assert answer.status_code == 201, answer.text


def store_template(services: Services, digest_id: int, part: str, template: str) -> None:
    """Store `template` as it is (as if saved before templates were checked on saving), and
    let the digest's next send carry its articles again."""
    from mailer.models import Digest

    with session_scope(services.engine) as session:
        row = session.get(Digest, digest_id)
        assert row is not None
        setattr(row, f"{part}_template", template)
        row.last_sent_at = None
        session.add(row)


def count_rows(services: Services, model: Any) -> int:
    with session_scope(services.engine) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def outbox_idle(services: Services, timeout: float = 10.0) -> None:
    """Wait until no outbox row is due (queued now, or being sent)."""
    from mailer.models import OutboxMessage, OutboxStatus

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(services.engine) as session:
            busy = session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(
                    (
                        (OutboxMessage.status == OutboxStatus.queued)
                        & (OutboxMessage.next_attempt_at <= services.clock.now())
                    )
                    | (OutboxMessage.status == OutboxStatus.sending)
                )
            )
        if not busy:
            return
        time.sleep(0.02)
    raise AssertionError("outbox still busy")


def link_in(message: EmailMessage, path_prefix: str, base: str = "http://testserver") -> str:
    """The path of the first link to `base` + `path_prefix` in the text part."""
    import re

    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    match = re.search(re.escape(base + path_prefix) + r"[^\s]+", text)
    assert match, f"no {path_prefix} link in:\n{text}"
    return match.group(0).removeprefix(base)
