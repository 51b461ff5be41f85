"""The `mailer` console script, run as a real process the way an operator runs it."""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from mailer import apikeys, config
from mailer.app import create_app
from mailer.db import session_scope
from mailer.models import OutboxMessage
from mailer.services import Services, build
from mailer.tokens import Purpose
from tests.commands import MAILER, assert_clear_refusal, mailer, operator_env
from tests.conftest import PG_ADMIN, SECRET, _pg_reachable, _pg_url, count_rows, free_port

pytestmark = pytest.mark.both_databases
"""Migrations, imports (bulk inserts) and exports from the command line: both databases."""

READER = "reader@example.com"


# ---- an in-process view of the same database ------------------------------------------


@pytest.fixture
def cli_env(database_url: str) -> dict[str, str]:
    """What an operator exports to point the command at the test's database."""
    return operator_env(MAILER_DATABASE__URL=database_url, MAILER_SECRET_KEY=SECRET)


def services_on(database_url: str, data_dir: Path) -> Services:
    settings = config.load(
        data_dir=str(data_dir), secret_key=SECRET, database={"url": database_url}
    )
    return build(settings)


@pytest.fixture
def app_services(database_url: str, tmp_path: Path) -> Iterator[Services]:
    """The app's services on the database the command writes to."""
    services = services_on(database_url, tmp_path / "app")
    yield services
    services.engine.dispose()


@pytest.fixture
def api(app_services: Services) -> Iterator[TestClient]:
    """The editors' API on the same database, with a key made in-process."""
    with session_scope(app_services.engine) as session:
        key = apikeys.create(session, "checks", app_services.clock.now())
    app = create_app(app_services, run_sender=False, run_scheduler=False)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client


def subscriber(api: TestClient, email: str) -> dict:
    found = api.get("/api/v1/subscribers", params={"email": email})
    assert found.status_code == 200, found.text
    [one] = found.json()
    return one


def all_emails(api: TestClient) -> list[str]:
    return sorted(item["email"] for item in api.get("/api/v1/subscribers").json())


# ---- apikey ---------------------------------------------------------------------------


def test_apikey_create_prints_the_key_alone_on_the_last_line_and_it_opens_the_api(
    cli_env: dict[str, str], app_services: Services, tmp_path: Path
) -> None:
    result = mailer("apikey", "create", "cms-integration", cwd=tmp_path, env=cli_env)
    assert result.returncode == 0, result.stderr
    key = result.stdout.splitlines()[-1]
    assert key == key.strip() and len(key) >= 20 and " " not in key

    app = create_app(app_services, run_sender=False, run_scheduler=False)
    with TestClient(app) as client:
        opened = client.get("/api/v1/lists", headers={"Authorization": f"Bearer {key}"})
        assert opened.status_code == 200
        assert "news" in [item["slug"] for item in opened.json()]
        forged = client.get("/api/v1/lists", headers={"Authorization": f"Bearer {key}x"})
        assert forged.status_code == 401

    second = mailer("apikey", "create", "another", cwd=tmp_path, env=cli_env)
    assert second.stdout.splitlines()[-1] != key, "every key is new"


# ---- db upgrade -----------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database that exists but has no schema at all (a PostgreSQL one is made here)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    if not _pg_reachable():
        if os.environ.get("MAILER_TEST_POSTGRES") == "skip":
            pytest.skip("PostgreSQL unreachable and MAILER_TEST_POSTGRES=skip")
        pytest.fail(f"PostgreSQL is unreachable at {PG_ADMIN}")
    name = f"mailer_cli_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        # A password in the URL (ignored by trust auth) must never be printed.
        yield _pg_url(name).replace("://postgres@", "://postgres:hunter2-secret@")
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_db_upgrade_creates_the_schema_and_the_default_form_on_an_empty_database(
    empty_database_url: str, tmp_path: Path
) -> None:
    env = operator_env(MAILER_DATABASE__URL=empty_database_url, MAILER_SECRET_KEY=SECRET)
    result = mailer("db", "upgrade", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "hunter2-secret" not in result.stdout + result.stderr

    again = mailer("db", "upgrade", cwd=tmp_path, env=env)
    assert again.returncode == 0, "upgrading an up-to-date database is harmless"

    services = services_on(empty_database_url, tmp_path / "app")
    try:
        with TestClient(create_app(services, run_sender=False, run_scheduler=False)) as client:
            page = client.get("/forms/default")
            assert page.status_code == 200
            assert 'name="email"' in page.text
            assert client.get("/readyz").status_code == 200
        with session_scope(services.engine) as session:
            key = apikeys.create(session, "checks", services.clock.now())
        with TestClient(create_app(services, run_sender=False, run_scheduler=False)) as client:
            form = client.get("/api/v1/forms/default", headers={"Authorization": f"Bearer {key}"})
            assert form.status_code == 200
            assert form.json()["lists"] == ["news"]
    finally:
        services.engine.dispose()


# ---- subscribers import / export ------------------------------------------------------

MIXED_CSV = """\
Email,Name,City
ada@example.com,Ada Reader,Berlin
not-an-address,Bad Row,Paris
Bob@EXAMPLE.org,,Rome
ada@example.com,Ada Again,Berlin
,No Address,Oslo
eve@example.net,"Eve
Bcc: victim@example.com",Lyon
carol@example.com,Carol,Madrid
"""


def test_import_adds_valid_rows_as_confirmed_and_skips_bad_rows_by_line_number(
    cli_env: dict[str, str], api: TestClient, app_services: Services, tmp_path: Path
) -> None:
    source = tmp_path / "readers.csv"
    source.write_text(MIXED_CSV)
    result = mailer(
        "subscribers", "import", str(source), "--list", "news", cwd=tmp_path, env=cli_env
    )
    assert result.returncode == 0, result.stderr
    assert "imported 3" in result.stdout and "skipped 4" in result.stdout

    reported = dict(re.findall(r"line (\d+): skipped: (.+)", result.stderr))
    assert sorted(reported, key=int) == ["3", "5", "6", "8"], result.stderr
    assert "address" in reported["3"]
    assert "duplicate" in reported["5"]
    assert "Traceback" not in result.stderr

    assert all_emails(api) == ["Bob@example.org", "ada@example.com", "carol@example.com"]
    for email in ("ada@example.com", "Bob@example.org", "carol@example.com"):
        reader = subscriber(api, email)
        assert [(item["slug"], item["status"]) for item in reader["lists"]] == [
            ("news", "confirmed")
        ]
        [event] = reader["consent_events"]
        assert event["action"] == "imported"
        assert event["lists"] == ["news"]
    assert subscriber(api, "ada@example.com")["name"] == "Ada Reader", "the first row wins"
    assert count_rows(app_services, OutboxMessage) == 0, "an import sends no mail"

    again = mailer(
        "subscribers", "import", str(source), "--list", "news", cwd=tmp_path, env=cli_env
    )
    assert again.returncode == 0
    assert "imported 0, already confirmed 3" in again.stdout
    assert len(subscriber(api, "ada@example.com")["consent_events"]) == 1


def test_import_never_re_adds_an_address_that_unsubscribed(
    cli_env: dict[str, str], api: TestClient, app_services: Services, tmp_path: Path
) -> None:
    source = tmp_path / "readers.csv"
    source.write_text(f"email\n{READER}\nnew@example.com\n")
    first = mailer(
        "subscribers", "import", str(source), "--list", "news", cwd=tmp_path, env=cli_env
    )
    assert first.returncode == 0, first.stderr

    reader_id = subscriber(api, READER)["id"]
    token = app_services.signer.sign(Purpose.unsubscribe, {"s": reader_id})
    left = api.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert left.status_code == 200
    events_before = len(subscriber(api, READER)["consent_events"])

    source.write_text(f"email\n{READER}\nlater@example.com\n")
    again = mailer(
        "subscribers", "import", str(source), "--list", "news", cwd=tmp_path, env=cli_env
    )
    assert again.returncode == 0, again.stderr
    assert "imported 1" in again.stdout
    assert re.search(r"line 2: skipped: .*unsubscribed", again.stderr), again.stderr
    reader = subscriber(api, READER)
    assert reader["lists"][0]["status"] == "unsubscribed"
    assert len(reader["consent_events"]) == events_before


def test_import_knows_a_reader_by_any_spelling_of_the_address(
    cli_env: dict[str, str], api: TestClient, tmp_path: Path
) -> None:
    source = tmp_path / "readers.csv"
    source.write_text("email\nReader@Example.COM\nreader@example.com\nREADER@EXAMPLE.com\n")
    result = mailer(
        "subscribers", "import", str(source), "--list", "news", cwd=tmp_path, env=cli_env
    )
    assert result.returncode == 0, result.stderr
    assert "imported 1" in result.stdout
    reported = dict(re.findall(r"line (\d+): skipped: (.+)", result.stderr))
    assert sorted(reported) == ["3", "4"] and all("duplicate" in r for r in reported.values())
    assert all_emails(api) == ["Reader@example.com"], "mail goes to the local part as first typed"

    source.write_text("email\nreader@EXAMPLE.COM\n")
    again = mailer(
        "subscribers", "import", str(source), "--list", "news", cwd=tmp_path, env=cli_env
    )
    assert again.returncode == 0, again.stderr
    assert "imported 0, already confirmed 1" in again.stdout
    assert len(subscriber(api, "reader@example.com")["consent_events"]) == 1


@pytest.fixture
def no_config_dir(tmp_path: Path) -> Path:
    """An empty directory: the command falls back to SQLite under ./var."""
    workdir = tmp_path / "site"
    workdir.mkdir()
    return workdir


def test_a_refusal_from_any_command_is_one_line_and_exit_code_2(no_config_dir: Path) -> None:
    """A refusal no command words itself (an account that exists, an address that is not
    one) comes out through the CLI's one mapping: one line on stderr, exit 2, nothing on
    stdout."""
    first = mailer("user", "create", "editor@example.org", "--role", "editor", cwd=no_config_dir)
    assert first.returncode == 0, first.stderr
    for args, phrase in (
        (("user", "create", "editor@example.org", "--role", "admin"), "already an account"),
        (("user", "create", "not-an-address", "--role", "editor"), "email:"),
    ):
        result = mailer(*args, cwd=no_config_dir)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and phrase in errors[0], result.stderr
        assert "Traceback" not in result.stderr and not result.stdout.strip(), result.stderr


def test_import_into_an_unknown_list_is_refused_clearly(no_config_dir: Path) -> None:
    source = no_config_dir / "readers.csv"
    source.write_text(f"email\n{READER}\n")
    result = mailer("subscribers", "import", str(source), "--list", "nope", cwd=no_config_dir)
    assert_clear_refusal(result, "no list 'nope'")
    assert "imported" not in result.stdout


def test_import_of_a_csv_without_an_email_column_is_refused_clearly(no_config_dir: Path) -> None:
    source = no_config_dir / "readers.csv"
    source.write_text("address,name\nreader@example.com,Ada\n")
    result = mailer("subscribers", "import", str(source), "--list", "news", cwd=no_config_dir)
    assert_clear_refusal(result, "'email' column")


def test_import_of_a_file_that_is_not_utf8_is_refused_clearly(no_config_dir: Path) -> None:
    source = no_config_dir / "readers.csv"
    source.write_bytes("email,name\njürgen@example.com,Jürgen Müller\n".encode("latin-1"))
    result = mailer("subscribers", "import", str(source), "--list", "news", cwd=no_config_dir)
    assert_clear_refusal(result, "UTF-8")


def test_export_writes_every_subscription_as_csv(cli_env: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "readers.csv"
    source.write_text("email,name\nada@example.com,Ada Reader\nmallory@example.com,=HYPERLINK(1)\n")
    mailer("subscribers", "import", str(source), "--list", "news", cwd=tmp_path, env=cli_env)

    result = mailer("subscribers", "export", cwd=tmp_path, env=cli_env)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["email"], r["name"], r["list"], r["status"]) for r in rows] == [
        ("ada@example.com", "Ada Reader", "news", "confirmed"),
        ("mallory@example.com", "'=HYPERLINK(1)", "news", "confirmed"),
    ], "a cell a spreadsheet would run as a formula is defused"
    assert all(r["confirmed_at"] for r in rows)

    target = tmp_path / "out" / "news.csv"
    target.parent.mkdir()
    to_file = mailer(
        "subscribers",
        "export",
        "--list",
        "news",
        "--output",
        str(target),
        cwd=tmp_path,
        env=cli_env,
    )
    assert to_file.returncode == 0, to_file.stderr
    assert target.read_text() == result.stdout
    other = mailer("subscribers", "export", "--list", "sport", cwd=tmp_path, env=cli_env)
    assert other.stdout.splitlines() == [result.stdout.splitlines()[0]], "only the header"


# ---- configuration errors -------------------------------------------------------------


@pytest.mark.parametrize(
    "how", ["--config before the command", "--config after the command", "MAILER_CONFIG"]
)
def test_a_missing_config_file_is_a_clear_error(tmp_path: Path, how: str) -> None:
    if how == "MAILER_CONFIG":
        result = mailer(
            "db", "upgrade", cwd=tmp_path, env=operator_env(MAILER_CONFIG="missing.toml")
        )
    elif how == "--config before the command":
        result = mailer("--config", "missing.toml", "db", "upgrade", cwd=tmp_path)
    else:
        result = mailer("db", "upgrade", "--config", "missing.toml", cwd=tmp_path)
    assert_clear_refusal(result, "config file not found", "missing.toml")
    assert not (tmp_path / "var").exists(), "nothing is created on the way out"


def test_the_config_file_is_used(tmp_path: Path) -> None:
    (tmp_path / "mailer.toml").write_text(
        'data_dir = "state"\n[database]\nurl = "sqlite:///custom.db"\n'
    )
    result = mailer("--config", "mailer.toml", "apikey", "create", "cms", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "custom.db").exists()
    assert (tmp_path / "state" / "secret.key").exists()
    assert not (tmp_path / "var").exists()


def test_production_without_a_secret_key_refuses_to_start(tmp_path: Path) -> None:
    env = operator_env(MAILER_PRODUCTION="true", MAILER_PUBLIC_URL="https://news.example.com")
    result = mailer("serve", "--port", str(free_port()), cwd=tmp_path, env=env)
    assert_clear_refusal(result, "MAILER_SECRET_KEY")
    assert not (tmp_path / "var" / "secret.key").exists(), "no key is made up in production"


# ---- serve ----------------------------------------------------------------------------


def wait_until_healthy(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert process.poll() is None, f"serve exited early:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"serve never became healthy:\n{log.read_text()}"
        time.sleep(0.1)


def wait_for_files(directory: Path, pattern: str, log: Path, timeout: float = 30) -> list[Path]:
    deadline = time.monotonic() + timeout
    while not (found := sorted(directory.glob(pattern))):
        assert time.monotonic() < deadline, f"nothing in {directory}:\n{log.read_text()}"
        time.sleep(0.1)
    return found


def stop(process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> int:
    """Stop the server as an init system would: a signal, then a kill if it hangs."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            return process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    return int(process.returncode)


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])  # noqa: S104 (a bind, not a peer)
def test_a_second_serve_on_a_port_in_use_stops_before_starting_anything(
    no_config_dir: Path, host: str
) -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind((host, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = mailer("serve", "--host", host, "--port", str(port), cwd=no_config_dir)
    assert_clear_refusal(result, f"port {port}", "in use")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Scheduler started" not in result.stdout + result.stderr
    assert not (no_config_dir / "var").exists(), "no database created, nothing migrated"


def test_serve_on_a_port_that_is_not_a_port_is_a_clear_error(no_config_dir: Path) -> None:
    result = mailer("serve", "--port", "70000", cwd=no_config_dir)
    assert_clear_refusal(result, "70000")
    assert not (no_config_dir / "var").exists()


def test_serve_with_no_config_at_all_takes_a_signup_and_writes_the_mail_to_var_outbox(
    no_config_dir: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = no_config_dir.parent / "serve.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [*MAILER, "serve", "--port", str(port)],
            cwd=no_config_dir,
            env=operator_env(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_healthy(base, process, log)
        assert "var/outbox" in log.read_text(), "the operator is told where mail goes"

        answer = httpx.post(f"{base}/subscribe", json={"email": READER, "form": "default"})
        assert answer.status_code == 202
        [eml] = wait_for_files(no_config_dir / "var" / "outbox" / "new", "*.eml", log)
        message = message_from_bytes(eml.read_bytes(), policy=policy.default)
        assert message["To"] == READER
        text = message.get_body(preferencelist=("plain",)).get_content()
        match = re.search(r"(\S+)/confirm/(\S+)", text)
        assert match, text
        assert match.group(1) == base, "links in mail reach the server that sent them"

        confirmed = httpx.post(match.group(0))
        assert confirmed.status_code == 200
        assert "subscribed" in confirmed.text
        assert (no_config_dir / "var" / "mailer.db").exists()

        # As systemd or docker stop it: a graceful shutdown, then uvicorn re-raises SIGTERM.
        assert stop(process) in (0, -signal.SIGTERM), log.read_text()
        assert "Application shutdown complete" in log.read_text()
    finally:
        stop(process)
    output = log.read_text()
    assert READER not in output, "addresses are not logged"
    assert "Traceback" not in output
