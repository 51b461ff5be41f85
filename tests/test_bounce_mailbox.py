"""The bounce mailbox poller against a real IMAP server (Debian's dovecot, started per
test with its own configuration): reports in the folder suppress and unsubscribe their
readers and are gone afterwards; a message whose reports could not be recorded stays to
be read again; `mailer bounces poll --once` and `mailer serve` poll it too."""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mailer.bounces.intake import Intake
from mailer.bounces.mailbox import MailboxError, MailboxPoller
from mailer.config import BounceSettings
from mailer.services import Services
from tests.bounces import intake_for, reader_state, reader_with_message, sample
from tests.commands import MAILER, operator_env
from tests.conftest import SECRET, free_port

DOVECOT = Path("/usr/sbin/dovecot")
USER, PASSWORD = "bounces", "mailbox-password-for-tests"
MAIL_OWNER = "nobody"
"""Dovecot refuses to open mail as root: the maildir belongs to this user."""


@dataclass
class Dovecot:
    port: int
    root: Path

    def imap(self) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        client.login(USER, PASSWORD)
        client.select("INBOX")
        return client

    def append(self, *messages: bytes) -> None:
        client = self.imap()
        try:
            for message in messages:
                status, _ = client.append("INBOX", None, None, message.replace(b"\n", b"\r\n"))
                assert status == "OK"
        finally:
            client.logout()

    def remaining(self) -> int:
        client = self.imap()
        try:
            status, found = client.search(None, "ALL")
            assert status == "OK"
            return len((found[0] or b"").split())
        finally:
            client.logout()


CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A dovecot of our own on a free loopback port, with one mailbox user."""
    assert DOVECOT.exists(), "dovecot is not installed (scripts/test installs dovecot-imapd)"
    assert os.geteuid() == 0, "dovecot is started as root here (it drops to its own users)"
    owner = pwd.getpwnam(MAIL_OWNER)
    root = Path(tempfile.mkdtemp(prefix="mailer-dovecot-"))
    root.chmod(0o755)  # dovecot's mail process runs as the mail owner and must get in
    for folder in ("mail", "home"):
        (root / folder).mkdir()
        os.chown(root / folder, owner.pw_uid, owner.pw_gid)
    (root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    port = free_port()
    config = root / "dovecot.conf"
    config.write_text(CONFIG.format(root=root, port=port, uid=owner.pw_uid, gid=owner.pw_gid))
    process = subprocess.Popen(
        [str(DOVECOT), "-F", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not _accepts(port):
            if process.poll() is not None or time.monotonic() > deadline:
                log = root / "dovecot.log"
                pytest.fail(f"dovecot did not start: {log.read_text() if log.exists() else ''}")
            time.sleep(0.05)
        yield Dovecot(port, root)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def mailbox_settings(dovecot: Dovecot, **extra: Any) -> dict[str, Any]:
    return {
        "imap_host": "127.0.0.1",
        "imap_port": dovecot.port,
        "imap_security": "none",
        "imap_username": USER,
        "imap_password": PASSWORD,
        "imap_interval_seconds": 0.2,
        **extra,
    }


@pytest.fixture
def settings_overrides(dovecot: Dovecot) -> dict[str, Any]:
    return {"bounces": mailbox_settings(dovecot)}


def poller(services: Services, intake: Intake | None = None) -> MailboxPoller:
    return MailboxPoller(intake or intake_for(services), services.settings.bounces)


def test_reports_in_the_mailbox_act_on_their_readers_and_are_removed(
    services: Services, dovecot: Dovecot
) -> None:
    gone, complains = "gone@example.net", "complains@example.net"
    gone_verp = services.sender.composer.return_path(reader_with_message(services, gone))
    complains_verp = services.sender.composer.return_path(reader_with_message(services, complains))
    dovecot.append(
        sample("postfix-5.1.1-user-unknown.eml", gone_verp, gone),
        sample("arf-fbl-abuse-headers.eml", complains_verp, "[REDACTED]"),
        sample("vacation-auto-reply.eml", gone_verp, gone),
        sample("dsn-forged-tag.eml", "", complains),
    )

    counts = poller(services).poll_once()

    assert counts == {"acted-on": 2, "auto-reply": 1, "dsn": 1}
    assert reader_state(services, gone)[0] == "hard-bounce"
    assert reader_state(services, complains)[:2] == ("complaint", "unsubscribed")
    assert dovecot.remaining() == 0
    assert poller(services).poll_once() == {}, "nothing is read twice"


def test_a_report_that_could_not_be_recorded_stays_in_the_mailbox_for_the_next_poll(
    services: Services, dovecot: Dovecot, tmp_path: Path
) -> None:
    verp = services.sender.composer.return_path(reader_with_message(services))
    dovecot.append(sample("exim-550-user-unknown.eml", verp))
    from mailer import db
    from mailer.config import load

    unreachable = db.make_engine(
        load(database={"url": f"sqlite:///{tmp_path}/missing/dir/mailer.db"}, secret_key=SECRET)
    )
    broken = Intake(unreachable, services.signer, services.settings.bounces, services.clock)

    assert poller(services, broken).poll_once() == {"failed": 1}
    assert dovecot.remaining() == 1 and reader_state(services)[0] is None

    assert poller(services).poll_once() == {"acted-on": 1}
    assert dovecot.remaining() == 0 and reader_state(services)[0] == "hard-bounce"


def test_a_wrong_password_is_a_clear_error(services: Services, dovecot: Dovecot) -> None:
    settings = BounceSettings(**mailbox_settings(dovecot, imap_password="wrong"))
    with pytest.raises(MailboxError) as failed:
        MailboxPoller(intake_for(services), settings).poll_once()
    assert f"127.0.0.1:{dovecot.port}/INBOX" in str(failed.value)
    assert "wrong" not in str(failed.value), "the password is not repeated"


def mailbox_env(database_url: str, dovecot: Dovecot, **extra: str) -> dict[str, str]:
    """The environment of a `mailer` command reading the test's mailbox."""
    return operator_env(
        MAILER_DATABASE__URL=database_url,
        MAILER_SECRET_KEY=SECRET,
        MAILER_MAIL__FROM_ADDRESS="news@example.org",
        MAILER_BOUNCES__IMAP_HOST="127.0.0.1",
        MAILER_BOUNCES__IMAP_PORT=str(dovecot.port),
        MAILER_BOUNCES__IMAP_SECURITY="none",
        MAILER_BOUNCES__IMAP_USERNAME=USER,
        MAILER_BOUNCES__IMAP_PASSWORD=PASSWORD,
        **extra,
    )


def test_mailer_bounces_poll_once_reads_the_mailbox_from_the_command_line(
    services: Services, dovecot: Dovecot, database_url: str, tmp_path: Path
) -> None:
    verp = services.sender.composer.return_path(reader_with_message(services))
    dovecot.append(sample("yahoo-5.1.1-user-unknown.eml", verp))
    env = mailbox_env(database_url, dovecot)
    done = subprocess.run(
        [*MAILER, "bounces", "poll", "--once"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "messages read: 1 (acted-on 1)"
    assert reader_state(services)[0] == "hard-bounce" and dovecot.remaining() == 0

    env["MAILER_BOUNCES__IMAP_PASSWORD"] = "wrong"
    refused = subprocess.run(
        [*MAILER, "bounces", "poll", "--once"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "error: bounce mailbox" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_mailer_serve_polls_the_mailbox_when_one_is_set(
    client: TestClient, services: Services, dovecot: Dovecot
) -> None:
    verp = services.sender.composer.return_path(reader_with_message(services))
    dovecot.append(sample("exchange-5.1.10-recipient-not-found.eml", verp))
    deadline = time.monotonic() + 15
    while reader_state(services)[0] is None:
        assert time.monotonic() < deadline, "the running app did not read the mailbox"
        time.sleep(0.1)
    assert reader_state(services)[0] == "hard-bounce"
    while dovecot.remaining():
        assert time.monotonic() < deadline, "the message stayed in the mailbox"
        time.sleep(0.1)


def test_mailer_worker_polls_the_mailbox_too(
    services: Services, dovecot: Dovecot, database_url: str, tmp_path: Path
) -> None:
    verp = services.sender.composer.return_path(reader_with_message(services))
    dovecot.append(sample("postfix-5.1.1-user-unknown.eml", verp))
    env = mailbox_env(database_url, dovecot, MAILER_BOUNCES__IMAP_INTERVAL_SECONDS="0.5")
    worker = subprocess.Popen(
        [*MAILER, "worker"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while reader_state(services)[0] is None:
            assert worker.poll() is None, worker.communicate()
            assert time.monotonic() < deadline, "the worker did not read the mailbox"
            time.sleep(0.2)
        assert reader_state(services)[0] == "hard-bounce"
    finally:
        worker.send_signal(signal.SIGTERM)
        _, errors = worker.communicate(timeout=30)
    assert worker.returncode == 0, errors
    assert "Traceback" not in errors
