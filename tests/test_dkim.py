"""DKIM: every message that reaches the relay verifies against the record `mailer dkim
keygen` printed; added headers or a changed body break it; bad keys stop start-up."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path
from typing import Any

import dkim
import dkim.crypto
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from dkim.util import parse_tag_value
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from mailer import config
from mailer.cli import app
from mailer.clock import FrozenClock
from mailer.delivery.dkim import DkimSigner, _rsa_sign_with_openssl
from mailer.services import Services, build
from tests.commands import DOMAIN, PublishedKey, assert_clear_refusal, keygen, mailer, operator_env
from tests.conftest import SECRET, SmtpSink, outbox_idle
from tests.factories import article, confirm_readers, morning_brief, send_now

READER = "ada@example.com"


class DnsStub:
    """Answers TXT lookups from the records published so far."""

    def __init__(self, *keys: PublishedKey) -> None:
        self.records = {key.record_name: key.txt_value for key in keys}

    def __call__(self, name: bytes, timeout: int = 5) -> bytes | None:
        value = self.records.get(name.decode().rstrip("."))
        return value.encode() if value is not None else None


@pytest.fixture
def rsa_key(tmp_path: Path) -> PublishedKey:
    return keygen(tmp_path, "mail2026")


@pytest.fixture
def ed25519_key(tmp_path: Path) -> PublishedKey:
    return keygen(tmp_path, "ed2026", "--ed25519")


@pytest.fixture
def with_ed25519() -> bool:
    """Tests parametrize this to add the second, ed25519 signature."""
    return False


@pytest.fixture
def transport() -> str:
    """Tests parametrize this to deliver into the Maildir instead of the SMTP sink."""
    return "smtp"


@pytest.fixture
def settings_overrides(
    rsa_key: PublishedKey, with_ed25519: bool, transport: str, request: pytest.FixtureRequest
) -> dict[str, Any]:
    keys = {"domain": DOMAIN, "selector": rsa_key.selector, "private_key_path": str(rsa_key.path)}
    if with_ed25519:
        ed25519_key: PublishedKey = request.getfixturevalue("ed25519_key")
        keys["ed25519_selector"] = ed25519_key.selector
        keys["ed25519_private_key_path"] = str(ed25519_key.path)
    return {"dkim": keys, "smtp": {"transport": transport}}


def verifies(data: bytes, index: int, dns: DnsStub) -> bool:
    """Whether the message's signature number `index` verifies."""
    try:
        return bool(dkim.DKIM(data).verify(idx=index, dnsfunc=dns))
    except dkim.DKIMException:
        return False


def signature_tags(data: bytes, index: int = 0) -> dict[bytes, bytes]:
    message = dkim.DKIM(data)
    signatures = [value for name, value in message.headers if name.lower() == b"dkim-signature"]
    return dict(parse_tag_value(signatures[index]))


def signed_names(data: bytes, index: int = 0) -> list[str]:
    return [name.strip().decode() for name in signature_tags(data, index)[b"h"].split(b":")]


def with_header(data: bytes, header: bytes, at_top: bool = False) -> bytes:
    """The message with one more header line, above all others or below them."""
    if at_top:
        return header + b"\r\n" + data
    head, body = data.split(b"\r\n\r\n", 1)
    return head + b"\r\n" + header + b"\r\n\r\n" + body


def a_digest(editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock) -> bytes:
    """A reader confirmed, a digest sent to them; the digest's bytes as the relay got them."""
    confirm_readers(editor, smtp, [READER])
    article(editor, clock, 1, ["world"], title="Talks resume in Geneva")
    article(editor, clock, 2, ["health"], title="A new vaccine is approved")
    send_now(editor, morning_brief(editor)["id"])
    outbox_idle(services)
    [digest] = [m for m in smtp.messages if b"Feedback-ID: " in m.data and b":digest:" in m.data]
    return digest.data


def test_confirmations_welcomes_and_digests_reach_the_relay_signed(
    editor: TestClient,
    services: Services,
    smtp: SmtpSink,
    clock: FrozenClock,
    rsa_key: PublishedKey,
) -> None:
    editor.patch("/api/v1/lists/news", json={"welcome_enabled": True})
    a_digest(editor, services, smtp, clock)
    dns = DnsStub(rsa_key)
    received = smtp.messages
    kinds = {
        "confirmation": [m for m in received if b"/confirm/" in m.data],
        "welcome": [m for m in received if b"Welcome to News" in m.data],
        "digest": [m for m in received if b"Morning Brief" in m.data],
    }
    assert all(len(found) == 1 for found in kinds.values()), kinds
    for kind, [mail] in kinds.items():
        assert mail.data.startswith(b"DKIM-Signature: "), kind
        assert dkim.verify(mail.data, dnsfunc=dns), f"the {kind} does not verify"
        tags = signature_tags(mail.data)
        assert tags[b"a"] == b"rsa-sha256" and tags[b"c"] == b"relaxed/relaxed", kind
        assert tags[b"d"] == DOMAIN.encode() and tags[b"s"] == b"mail2026", kind
        assert b"l" not in tags, "no body length: appended text must break the signature"

    digest = kinds["digest"][0].data
    assert signed_names(digest) == [
        "from",
        "from",
        "to",
        "subject",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "list-unsubscribe-post",
        "feedback-id",
    ]
    confirmation = kinds["confirmation"][0].data
    names = signed_names(confirmation)
    assert "list-unsubscribe" not in names, "only headers the message has are signed"
    assert names.count("from") == 2 and names.count("subject") == 2


def test_feedback_id_names_the_send_list_and_kind_but_no_reader(
    editor: TestClient, services: Services, smtp: SmtpSink, clock: FrozenClock
) -> None:
    editor.patch("/api/v1/lists/news", json={"welcome_enabled": True})
    data = a_digest(editor, services, smtp, clock)
    digest = dkim.DKIM(data)
    [feedback_id] = [value for name, value in digest.headers if name == b"Feedback-ID"]
    send_id, list_slug, kind, sender = feedback_id.strip().decode().split(":")
    assert send_id.isdigit() and (list_slug, kind, sender) == ("news", "digest", DOMAIN)
    [welcome] = [m.message for m in smtp.messages if b"Welcome to News" in m.data]
    assert welcome["Feedback-ID"] == f"welcome:news:welcome:{DOMAIN}"
    assert READER.split("@")[0] not in feedback_id.decode()


@pytest.mark.parametrize(
    "added",
    [
        b"From: Example News <news@example.org>",
        b"Subject: Your account is suspended",
        b"List-Unsubscribe: <https://evil.example/unsubscribe>",
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
    ],
)
@pytest.mark.parametrize("at_top", [False, True], ids=["below", "above"])
def test_a_second_copy_of_an_oversigned_header_breaks_the_signature(
    editor: TestClient,
    services: Services,
    smtp: SmtpSink,
    clock: FrozenClock,
    rsa_key: PublishedKey,
    added: bytes,
    at_top: bool,
) -> None:
    data = a_digest(editor, services, smtp, clock)
    dns = DnsStub(rsa_key)
    harmless = b"X-Spam-Checked: yes"
    assert dkim.verify(with_header(data, harmless, at_top), dnsfunc=dns), (
        "a header outside the signed list leaves it valid"
    )
    assert not dkim.verify(with_header(data, added, at_top), dnsfunc=dns)


def test_a_changed_or_extended_body_breaks_the_signature(
    editor: TestClient,
    services: Services,
    smtp: SmtpSink,
    clock: FrozenClock,
    rsa_key: PublishedKey,
) -> None:
    data = a_digest(editor, services, smtp, clock)
    dns = DnsStub(rsa_key)
    assert dkim.verify(data, dnsfunc=dns)
    assert b"Geneva" in data
    assert not dkim.verify(data.replace(b"Geneva", b"Zurich"), dnsfunc=dns)
    assert not dkim.verify(data + b"Click here for a prize\r\n", dnsfunc=dns)


def test_test_sends_are_signed_too(
    editor: TestClient,
    services: Services,
    smtp: SmtpSink,
    clock: FrozenClock,
    rsa_key: PublishedKey,
) -> None:
    article(editor, clock, 1, ["world"])
    digest = morning_brief(editor)
    answer = editor.post(
        f"/api/v1/digests/{digest['id']}/test", json={"addresses": ["editor@example.com"]}
    )
    assert answer.status_code == 200, answer.text
    [mail] = smtp.wait_for(1)
    assert mail.message["Subject"].startswith("[TEST]")
    assert dkim.verify(mail.data, dnsfunc=DnsStub(rsa_key))


@pytest.mark.parametrize("transport", ["maildir"])
def test_mail_written_to_the_maildir_keeps_its_signature(
    editor: TestClient, services: Services, rsa_key: PublishedKey, transport: str
) -> None:
    assert editor.post("/subscribe", json={"email": READER}).status_code == 202
    outbox_idle(services)
    [written] = list((services.settings.maildir_path / "new").iterdir())
    data = written.read_bytes()
    assert data.startswith(b"Return-Path: <bounces+")
    assert b"\r\nDKIM-Signature: " in data
    assert dkim.verify(data, dnsfunc=DnsStub(rsa_key))


@pytest.mark.parametrize("with_ed25519", [True])
def test_with_an_ed25519_key_a_second_signature_verifies_beside_the_rsa_one(
    editor: TestClient,
    services: Services,
    smtp: SmtpSink,
    clock: FrozenClock,
    rsa_key: PublishedKey,
    ed25519_key: PublishedKey,
) -> None:
    assert "k=ed25519;" in ed25519_key.txt_value
    data = a_digest(editor, services, smtp, clock)
    dns = DnsStub(rsa_key, ed25519_key)
    assert signature_tags(data, 0)[b"a"] == b"rsa-sha256"
    assert signature_tags(data, 1)[b"a"] == b"ed25519-sha256"
    assert signature_tags(data, 1)[b"c"] == b"relaxed/relaxed"
    assert signed_names(data, 1) == signed_names(data, 0)
    assert verifies(data, 0, dns) and verifies(data, 1, dns)
    assert not verifies(data, 1, DnsStub(rsa_key)), "it needs its own published key"
    changed = data.replace(b"Geneva", b"Zurich")
    assert not verifies(changed, 1, dns) and not verifies(changed, 0, dns)


# ---- keygen ---------------------------------------------------------------------------


def test_keygen_writes_a_private_key_only_its_owner_reads_and_a_record_that_verifies(
    tmp_path: Path,
) -> None:
    published = keygen(tmp_path, "news2026")
    assert stat.S_IMODE(os.stat(published.path).st_mode) == 0o600
    assert published.record_name == f"news2026._domainkey.{DOMAIN}"
    assert published.txt_value.startswith("v=DKIM1; k=rsa; p=")
    value = re.search(r"^  value:\s+(.+)$", published.output, re.MULTILINE)
    assert value and value.group(1).count('"') == 4, "a 2048-bit key takes two strings"
    assert f"{published.record_name}. 3600 IN TXT (" in published.output
    assert f'private_key_path = "{published.path}"' in published.output
    assert 'selector = "news2026"' in published.output

    key = serialization.load_pem_private_key(published.path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    signer = DkimSigner.from_settings(
        config.DkimSettings(
            domain=DOMAIN, selector="news2026", private_key_path=str(published.path)
        )
    )
    assert signer is not None
    data = signer.sign(
        b"From: news@example.org\r\nTo: ada@example.com\r\nSubject: Hello\r\n\r\nBody\r\n"
    )
    assert dkim.verify(data, dnsfunc=DnsStub(published))
    assert not dkim.verify(data, dnsfunc=DnsStub(keygen(tmp_path, "news2026b"))), (
        "another key's record does not verify it"
    )


def test_keygen_refuses_to_overwrite_a_key_or_to_take_a_bad_name(tmp_path: Path) -> None:
    existing = tmp_path / "dkim.pem"
    existing.write_text("the key in use")
    runner = CliRunner()
    args = ["dkim", "keygen", "--domain", DOMAIN, "--out", str(existing)]
    refused = runner.invoke(app, [*args, "--selector", "s1"])
    assert refused.exit_code == 2 and "not overwriting" in refused.stderr
    assert existing.read_text() == "the key in use"
    fresh = tmp_path / "fresh.pem"
    bad = runner.invoke(
        app, ["dkim", "keygen", "--selector", "a b", "--domain", DOMAIN, "--out", str(fresh)]
    )
    assert bad.exit_code == 2 and "is not a DNS name" in bad.stderr
    assert not fresh.exists()


# ---- bad keys stop start-up ------------------------------------------------------------


def write_key(path: Path, key: Any) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


BAD_KEYS = {
    "missing": (lambda path: path, "cannot read"),
    "not a key": (lambda path: write_text(path, "hello"), "not an unencrypted PEM"),
    "unreadable": (lambda path: path.parent, "cannot read"),
    "rsa 1024": (
        lambda path: write_key(path, rsa.generate_private_key(65537, 1024)),
        "1024-bit RSA key; at least 2048 bits",
    ),
    "ec": (
        lambda path: write_key(path, ec.generate_private_key(ec.SECP256R1())),
        "is not an RSA key",
    ),
}


@pytest.mark.parametrize("problem", list(BAD_KEYS))
def test_a_bad_key_stops_start_up_with_a_clear_message(
    tmp_path: Path, database_url: str, problem: str
) -> None:
    make, message = BAD_KEYS[problem]
    path: Path = make(tmp_path / "dkim.pem")
    settings = config.load(
        data_dir=str(tmp_path / "var"),
        secret_key=SECRET,
        database={"url": database_url},
        dkim={"domain": DOMAIN, "selector": "s1", "private_key_path": str(path)},
    )
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        build(settings)


def test_serve_and_worker_refuse_to_start_with_an_unusable_key(
    tmp_path: Path, rsa_key: PublishedKey
) -> None:
    small = write_key(tmp_path / "small.pem", rsa.generate_private_key(65537, 1024))
    env = operator_env(
        MAILER_SECRET_KEY=SECRET,
        MAILER_DKIM__DOMAIN=DOMAIN,
        MAILER_DKIM__SELECTOR="s1",
        MAILER_DKIM__PRIVATE_KEY_PATH=str(small),
    )
    worker = mailer("worker", cwd=tmp_path, env=env)
    assert worker.returncode == 2
    assert_clear_refusal(worker, "dkim.private_key_path", "1024-bit RSA key")
    env["MAILER_DKIM__PRIVATE_KEY_PATH"] = str(rsa_key.path)
    env["MAILER_DKIM__ED25519_SELECTOR"] = "ed1"
    env["MAILER_DKIM__ED25519_PRIVATE_KEY_PATH"] = str(tmp_path / "nowhere.pem")
    serve = mailer("serve", "--port", "1", cwd=tmp_path, env=env)
    assert serve.returncode == 2
    assert_clear_refusal(serve, "dkim.ed25519_private_key_path", "cannot read")


def test_the_rsa_step_done_by_openssl_gives_dkimpys_exact_signature(rsa_key: PublishedKey) -> None:
    """The private-key step runs in OpenSSL for speed; its bytes are those of dkimpy's own
    pure-Python step, so every signature is the one dkimpy would have made."""
    parsed = dkim.crypto.parse_pem_private_key(
        DkimSigner.from_settings(
            config.DkimSettings(
                domain=DOMAIN, selector=rsa_key.selector, private_key_path=str(rsa_key.path)
            )
        )
        .keys[0]
        .private_key  # type: ignore[union-attr]
    )
    for text in (b"", b"a header hash", bytes(range(256))):
        digest = hashlib.sha256(text)
        assert _rsa_sign_with_openssl(digest, parsed) == dkim.crypto.RSASSA_PKCS1_v1_5_sign(
            digest, parsed
        )
