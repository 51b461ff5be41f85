"""The inbound SMTP listener over real SMTP: DSNs and ARF reports sent to the VERP
addresses our mail went out from suppress and unsubscribe the readers, so the next digest
does not reach them; mail for other domains, oversize mail and forged tags change nothing.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from pathlib import Path

import aiosmtplib
import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from mailer import db
from mailer.bounces.intake import Intake
from mailer.bounces.listener import BounceListener
from mailer.clock import SystemClock
from mailer.config import load
from mailer.db import session_scope
from mailer.models import BounceEvent
from mailer.services import Services
from tests.bounces import deliver, reader_state, reader_with_message, sample
from tests.commands import MAILER, operator_env
from tests.conftest import SECRET, SmtpSink, free_port
from tests.factories import add_readers, send_digest, wait_done


@pytest.fixture
def clock() -> SystemClock:  # type: ignore[override]
    """Real time: the digest picks the articles published just before it is sent."""
    return SystemClock()


def tampered(verp: str) -> str:
    local, _, domain = verp.partition("@")
    return f"{local[:-1]}{'a' if local[-1] != 'a' else 'b'}@{domain}"


def test_a_hard_bounce_and_a_complaint_by_smtp_keep_the_next_digest_from_both_readers(
    editor: TestClient,
    services: Services,
    smtp: SmtpSink,
    listener: BounceListener,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    stays, gone, complains = "stays@example.com", "gone@example.net", "complains@example.net"
    add_readers(services, [stays, gone, complains])
    first = wait_done(editor, send_digest(editor, story=1))
    assert first["sent"] == 3
    verp = {reader: smtp.to(reader)[0].mail_from for reader in (stays, gone, complains)}

    deliver(listener, sample("postfix-5.1.1-user-unknown.eml", verp[gone], gone), [verp[gone]])
    complaint = sample("arf-yahoo-abuse.eml", verp[complains], "redacted@example.net")
    deliver(listener, complaint, ["fbl@example.org"], sender="feedback@arf.mail.yahoo.com")
    forged = sample("postfix-5.1.1-user-unknown.eml", tampered(verp[stays]), stays)
    answer = deliver(listener, forged, [tampered(verp[stays])])
    assert answer[1].startswith("OK"), "a forged tag is accepted like any other, then ignored"

    digest_id = int(editor.get(f"/api/v1/sends/{first['id']}").json()["digest_id"])
    second = wait_done(editor, send_digest(editor, story=2, digest_id=digest_id))
    assert (second["total"], second["sent"]) == (1, 1)
    assert len(smtp.to(stays)) == 2, "the forged bounce changed nothing"
    assert len(smtp.to(gone)) == 1 and len(smtp.to(complains)) == 1

    [bounced] = editor.get("/api/v1/subscribers", params={"email": gone}).json()
    assert bounced["suppression"]["reason"] == "hard-bounce"
    assert "5.1.1" in bounced["suppression"]["detail"]
    [complainer] = editor.get("/api/v1/subscribers", params={"email": complains}).json()
    assert complainer["suppression"]["reason"] == "complaint"
    assert [s["status"] for s in complainer["lists"]] == ["unsubscribed"]
    left = complainer["consent_events"][-1]
    assert left["action"] == "unsubscribed" and "complaint" in left["consent_text"]
    [kept] = editor.get("/api/v1/subscribers", params={"email": stays}).json()
    assert kept["suppression"] is None

    assert listener.handler.intake.counts == {"acted-on": 2, "dsn": 1}
    logged = "\n".join(
        r.getMessage() for r in caplog.records if r.levelno >= logging.INFO and r.name != "httpx"
    )
    for address in (stays, gone, complains, verp[gone]):
        assert address not in logged, "no address is logged at info"


def test_mail_for_another_domain_is_refused_and_our_domain_accepted_whatever_the_local_part(
    services: Services, listener: BounceListener
) -> None:
    data = sample("postfix-5.1.1-user-unknown.eml", "bounces@example.org")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        deliver(listener, data, ["someone@elsewhere.example"])
    [reason] = refused.value.recipients
    assert reason.code == 550 and "5.1.2" in reason.message

    errors, message = deliver(listener, data, ["bounces@EXAMPLE.org", "postmaster@example.org"])
    assert errors == {} and message.startswith("OK")
    with session_scope(services.engine) as session:
        assert session.exec(select(BounceEvent)).all() == []


@pytest.mark.parametrize("settings_overrides", [{"bounces": {"max_message_bytes": 4000}}])
def test_a_message_over_the_size_limit_is_refused_with_552(
    services: Services, listener: BounceListener
) -> None:
    verp = services.sender.composer.return_path(reader_with_message(services))
    data = sample("postfix-5.1.1-user-unknown.eml", verp) + b"\n" + b"x" * 5000 + b"\n"
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        deliver(listener, data, [verp])
    assert refused.value.code == 552
    assert reader_state(services)[0] is None


def test_one_message_to_several_bounce_addresses_is_handled_for_each(
    services: Services, listener: BounceListener
) -> None:
    first = services.sender.composer.return_path(reader_with_message(services, "a@example.com"))
    second = services.sender.composer.return_path(reader_with_message(services, "b@example.com"))
    deliver(listener, sample("exim-550-user-unknown.eml", first), [first, second])
    assert reader_state(services, "a@example.com")[0] == "hard-bounce"
    assert reader_state(services, "b@example.com")[0] == "hard-bounce"


def test_mailer_bounces_serve_listens_until_sigterm(
    services: Services, tmp_path: Path, database_url: str
) -> None:
    port = free_port()
    env = operator_env(
        MAILER_DATABASE__URL=database_url,
        MAILER_SECRET_KEY=SECRET,
        MAILER_MAIL__FROM_ADDRESS="news@example.org",
        MAILER_BOUNCES__LISTEN_PORT=str(port),
    )
    process = subprocess.Popen(
        [*MAILER, "bounces", "serve", "--host", "127.0.0.1"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        verp = services.sender.composer.return_path(reader_with_message(services))
        deadline = time.monotonic() + 20
        while True:
            try:
                deliver(port, sample("postfix-5.1.1-user-unknown.eml", verp), [verp])
                break
            except aiosmtplib.SMTPConnectError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        assert reader_state(services)[0] == "hard-bounce"
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=20)
    assert process.returncode == 0, errors
    assert f"127.0.0.1:{port}" in errors


def test_a_report_that_cannot_be_recorded_is_answered_451_so_the_sender_retries(
    services: Services, tmp_path: Path
) -> None:
    unreachable = db.make_engine(
        load(database={"url": f"sqlite:///{tmp_path}/missing/dir/mailer.db"}, secret_key=SECRET)
    )
    intake = Intake(unreachable, services.signer, services.settings.bounces, services.clock)
    broken = BounceListener(intake, "example.org", "127.0.0.1", free_port(), 100_000)
    broken.start()
    try:
        verp = services.sender.composer.return_path(reader_with_message(services))
        with pytest.raises(aiosmtplib.SMTPResponseException) as deferred:
            deliver(broken, sample("postfix-5.1.1-user-unknown.eml", verp), [verp])
    finally:
        broken.stop()
    assert deferred.value.code == 451
    assert reader_state(services)[0] is None
