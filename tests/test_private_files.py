"""Files holding readers' personal data (the SQLite database and its -wal and -shm files,
the Maildir and each message in it, the signing key, CSV exports) are readable by the
user mailer runs as only, whatever the umask, and an older installation's open ones are
closed at start-up."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from mailer import config, db
from mailer.db import session_scope
from mailer.delivery.transport import MaildirTransport
from mailer.services import build
from tests.commands import mailer, operator_env
from tests.conftest import SECRET


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most systems give a service: files 0644 and directories 0755 unless the
    app asks for less."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


def no_config(workdir: Path) -> config.Settings:
    """Settings as `mailer serve` has them with no config at all, run in `workdir`."""
    return config.load(data_dir=str(workdir / "var"))


def test_start_up_makes_the_data_directory_database_key_and_outbox_private(
    tmp_path: Path,
) -> None:
    services = build(no_config(tmp_path))
    try:
        db.upgrade(services.engine)
        with session_scope(services.engine) as session:
            session.execute(text("SELECT count(*) FROM subscribers"))
        var = tmp_path / "var"
        with services.engine.connect():  # the WAL files exist while a connection is open
            found = {
                name: mode(var / name)
                for name in ["mailer.db", "mailer.db-wal", "mailer.db-shm", "secret.key"]
            }
        assert found == dict.fromkeys(found, "0o600")
        dirs = [var, var / "outbox", var / "outbox" / "new", var / "outbox" / "tmp"]
        assert {str(d): mode(d) for d in dirs} == dict.fromkeys(map(str, dirs), "0o700")
    finally:
        services.engine.dispose()


def test_each_message_written_to_the_maildir_is_private(tmp_path: Path) -> None:
    transport = MaildirTransport(tmp_path / "outbox")
    asyncio.run(transport.send("bounces@example.org", "reader@example.com", b"Subject: x\r\n\r\n"))
    [eml] = (tmp_path / "outbox" / "new").iterdir()
    assert mode(eml) == "0o600"
    assert mode(tmp_path / "outbox" / "cur") == "0o700"


def test_db_upgrade_and_an_export_to_a_file_are_private(tmp_path: Path) -> None:
    env = operator_env(MAILER_SECRET_KEY=SECRET)
    upgraded = mailer("db", "upgrade", cwd=tmp_path, env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert mode(tmp_path / "var") == "0o700"
    assert mode(tmp_path / "var" / "mailer.db") == "0o600"

    new_file = tmp_path / "readers.csv"
    exported = mailer("subscribers", "export", "-o", str(new_file), cwd=tmp_path, env=env)
    assert exported.returncode == 0, exported.stderr
    assert mode(new_file) == "0o600"
    old_file = tmp_path / "shared.csv"
    old_file.write_text("stale\n")
    old_file.chmod(0o644)
    again = mailer("subscribers", "export", "-o", str(old_file), cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert mode(old_file) == "0o600" and old_file.read_text().startswith("email")


def test_data_an_older_version_left_open_is_closed_at_start_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    var = tmp_path / "var"
    (var / "outbox" / "new").mkdir(parents=True)
    for directory in (var, var / "outbox", var / "outbox" / "new"):
        directory.chmod(0o755)
    sqlite3.connect(var / "mailer.db").close()
    (var / "mailer.db").chmod(0o644)
    (var / "secret.key").write_text("k" * 48)
    (var / "secret.key").chmod(0o640)

    with caplog.at_level(logging.WARNING, logger="mailer"):
        build(no_config(tmp_path)).engine.dispose()

    assert mode(var) == mode(var / "outbox") == mode(var / "outbox" / "new") == "0o700"
    assert mode(var / "mailer.db") == mode(var / "secret.key") == "0o600"
    [warning] = [r for r in caplog.records if "other users" in r.getMessage()]
    assert "mailer.db (was 644)" in warning.getMessage()

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mailer"):
        build(no_config(tmp_path)).engine.dispose()
    assert not [r for r in caplog.records if "other users" in r.getMessage()], "once"
