"""`mailer digest` and `mailer sends`, run as real processes (the rest: test_cli.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mailer import config
from mailer.app import create_app
from mailer.services import build
from tests.conftest import SECRET

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
