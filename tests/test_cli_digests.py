"""The `mailer` command, run as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from mailer import config
from mailer.api.app import create_app
from mailer.services import build
from tests.conftest import SECRET, free_port

MAILER = [sys.executable, "-m", "mailer.cli"]


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    full_env.update(env or {})
    return subprocess.run(
        [*MAILER, *args],
        cwd=cwd,
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return {"MAILER_DATABASE__URL": database_url, "MAILER_SECRET_KEY": SECRET}


def editor_client(database_url: str, tmp_path: Path) -> TestClient:
    settings = config.load(
        data_dir=str(tmp_path / "var"), secret_key=SECRET, database={"url": database_url}
    )
    return TestClient(create_app(build(settings), run_sender=False, run_scheduler=False))


def test_apikey_create_prints_a_working_key_on_the_last_line(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    result = run(["apikey", "create", "cms"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("mk_") and " " not in key
    with editor_client(database_url, tmp_path) as client:
        answer = client.get("/api/v1/lists", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200
        assert (
            client.get("/api/v1/lists", headers={"Authorization": "Bearer mk_x"}).status_code == 401
        )


def test_db_upgrade_creates_the_schema_and_the_default_form(tmp_path: Path) -> None:
    database = tmp_path / "fresh.db"
    env = {"MAILER_DATABASE__URL": f"sqlite:///{database}", "MAILER_SECRET_KEY": SECRET}
    result = run(["db", "upgrade"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    key = run(["apikey", "create", "x"], tmp_path, env).stdout.strip().splitlines()[-1]
    with editor_client(env["MAILER_DATABASE__URL"], tmp_path) as client:
        form = client.get("/api/v1/forms/default", headers={"Authorization": f"Bearer {key}"})
        assert form.json()["lists"] == ["news"]


CSV = """email,name
reader@example.com,Ada Reader
not-an-address,Bad Row
Second@EXAMPLE.org,
reader@example.com,Duplicate
,Empty
third@example.net,"Eve
Bcc: victim@example.com"
"""


def test_import_adds_confirmed_readers_and_reports_bad_rows(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    source = tmp_path / "readers.csv"
    source.write_text(CSV)
    result = run(["subscribers", "import", str(source), "--list", "news"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "imported 2" in result.stdout
    assert "line 3" in result.stderr and "invalid address" in result.stderr
    assert "line 5" in result.stderr and "duplicate" in result.stderr
    assert "line 6" in result.stderr
    assert "line 8" in result.stderr, "a name with a line break is refused"
    key = run(["apikey", "create", "x"], tmp_path, env).stdout.strip().splitlines()[-1]
    with editor_client(database_url, tmp_path) as client:
        headers = {"Authorization": f"Bearer {key}"}
        [ada] = client.get(
            "/api/v1/subscribers", params={"email": "reader@example.com"}, headers=headers
        ).json()
        assert ada["name"] == "Ada Reader"
        assert ada["lists"][0]["status"] == "confirmed"
        [event] = ada["consent_events"]
        assert event["action"] == "imported" and event["lists"] == ["news"]
        assert (
            client.get(
                "/api/v1/subscribers", params={"email": "Second@example.org"}, headers=headers
            ).json()[0]["lists"][0]["status"]
            == "confirmed"
        )

    again = run(["subscribers", "import", str(source), "--list", "news"], tmp_path, env)
    assert "imported 0, already confirmed 2" in again.stdout


def test_import_never_re_adds_an_address_that_left(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    source = tmp_path / "one.csv"
    source.write_text("email\nreader@example.com\n")
    run(["subscribers", "import", str(source), "--list", "news"], tmp_path, env)
    key = run(["apikey", "create", "x"], tmp_path, env).stdout.strip().splitlines()[-1]
    with editor_client(database_url, tmp_path) as client:
        headers = {"Authorization": f"Bearer {key}"}
        [reader] = client.get(
            "/api/v1/subscribers", params={"email": "reader@example.com"}, headers=headers
        ).json()
        services = client.app.state.services  # type: ignore[attr-defined]
        from mailer.tokens import Purpose

        token = services.signer.sign(Purpose.unsubscribe, {"s": reader["id"]})
        client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    result = run(["subscribers", "import", str(source), "--list", "news"], tmp_path, env)
    assert "imported 0" in result.stdout
    assert "line 2" in result.stderr and "unsubscribed" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [("name\nAda\n", "email"), ("email\nreader@example.com\n", "no list")],
)
def test_import_refuses_clearly(
    env: dict[str, str], tmp_path: Path, content: str, message: str
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(content)
    list_slug = "nope" if message == "no list" else "news"
    result = run(["subscribers", "import", str(source), "--list", list_slug], tmp_path, env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "error:" in result.stderr
    assert ("'email' column" if message == "email" else "no list 'nope'") in result.stderr


def test_export_writes_csv(env: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("email\nreader@example.com\n")
    run(["subscribers", "import", str(source), "--list", "news"], tmp_path, env)
    result = run(["subscribers", "export"], tmp_path, env)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "email,name,list,status,subscribed_at,confirmed_at"
    assert lines[1].startswith("reader@example.com,,news,confirmed,")


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run(["--config", "nowhere.toml", "apikey", "create", "x"], tmp_path)
    assert result.returncode != 0
    assert "config file not found: nowhere.toml" in result.stderr
    assert "Traceback" not in result.stderr


def test_production_refuses_to_start_without_a_secret(tmp_path: Path) -> None:
    result = run(
        ["serve", "--port", str(free_port())],
        tmp_path,
        {"MAILER_PRODUCTION": "true", "MAILER_PUBLIC_URL": "https://news.example"},
    )
    assert result.returncode != 0
    assert "MAILER_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    """`mailer serve` with no configuration at all, in an empty directory."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    log = tmp_path / "serve.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [*MAILER, "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield base, process, log
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_serve_with_no_config_accepts_a_signup_and_writes_mail_to_var_outbox(
    served: tuple[str, subprocess.Popen[str], Path], tmp_path: Path
) -> None:
    base, process, log = served
    answer = httpx.post(f"{base}/subscribe", json={"email": "reader@example.com"})
    assert answer.status_code == 202
    outbox = tmp_path / "var" / "outbox" / "new"
    deadline = time.monotonic() + 20
    while not list(outbox.glob("*.eml")):
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    [mail] = list(outbox.glob("*.eml"))
    content = mail.read_text()
    assert "To: reader@example.com" in content
    assert "/confirm/" in content
    assert (tmp_path / "var" / "mailer.db").exists()
    output = log.read_text()
    assert "var/outbox/new" in output, "the operator is told where mail goes"
    assert "reader@example.com" not in output, "addresses are not logged"


def test_digest_send_and_sends_show(env: dict[str, str], database_url: str, tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("email\nreader@example.com\n")
    run(["subscribers", "import", str(source), "--list", "news"], tmp_path, env)
    key = run(["apikey", "create", "x"], tmp_path, env).stdout.strip().splitlines()[-1]
    with editor_client(database_url, tmp_path) as client:
        headers = {"Authorization": f"Bearer {key}"}
        client.post(
            "/api/v1/articles",
            headers=headers,
            json={
                "url": "https://news.example.com/a",
                "title": "A story",
                "topics": [],
                "published_at": datetime.now(UTC).isoformat(),
            },
        )
        created = client.post(
            "/api/v1/digests",
            headers=headers,
            json={"list": "news", "name": "Evening", "schedule": "0 18 * * *"},
        )
        assert created.status_code == 201

    sent = run(["digest", "send", "Evening"], tmp_path, env)
    assert sent.returncode == 0, sent.stderr
    send_id = sent.stdout.strip().splitlines()[-1]
    assert "queued for 1 recipients" in sent.stderr
    shown = run(["sends", "show", send_id, "--no-wait"], tmp_path, env)
    assert shown.returncode == 0
    assert "total 1" in shown.stdout and "pending 1" in shown.stdout

    again = run(["digest", "send", "Evening"], tmp_path, env)
    assert "skipped: no new articles" in again.stderr
    missing = run(["digest", "send", "Nope"], tmp_path, env)
    assert missing.returncode != 0 and "no digest named 'Nope'" in missing.stderr
    assert run(["sends", "show", "999"], tmp_path, env).returncode != 0
