"""Providers' bounce and complaint webhooks, over HTTP into a real database.

Amazon SES notifications are signed here like SNS signs them, with a key whose
certificate a real HTTPS server on loopback serves (the server's own certificate is
trusted through `sns_certificate_ca_file`); Postmark's come with basic auth, Mailgun's
with an HMAC signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from sqlmodel import col, select

from mailer import config
from mailer.app import create_app
from mailer.clock import FrozenClock
from mailer.db import session_scope
from mailer.jobs import purge_job
from mailer.models import (
    BounceEvent,
    ConsentAction,
    ConsentEvent,
    OutboxMessage,
    ProviderNotificationToken,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
from mailer.services import Services, build
from mailer.subscriptions import transfer
from tests.conftest import count_rows

TOPIC = "arn:aws:sns:eu-west-1:123456789012:mailer-bounces"
READER = "rita.reader@example.com"
OTHER_READER = "otto.other@example.com"
POSTMARK_USER = "postmark-hook"
POSTMARK_PASSWORD = "a-long-random-webhook-password"
MAILGUN_KEY = "key-mailgun-signing-0123456789abcdef"


# ---- a certificate server standing in for sns.<region>.amazonaws.com -------------------


def _certificate(
    key: rsa.RSAPrivateKey, name: str, now: datetime, *, server: bool = False
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(key, hashes.SHA256())


@dataclass
class SnsHost:
    """An HTTPS server on 127.0.0.1 serving the signing certificate and answering
    subscription confirmations; it records every path fetched."""

    base: str
    signing_key: rsa.RSAPrivateKey
    tls_ca_file: Path
    fetched: list[str] = field(default_factory=list)

    @property
    def certificate_url(self) -> str:
        return f"{self.base}/SimpleNotificationService-0123456789abcdef.pem"


@pytest.fixture
def sns_host(tmp_path: Path, clock: FrozenClock) -> Iterator[SnsHost]:
    now = datetime.now(UTC)
    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # The signing certificate is checked against the test clock, the TLS one (below)
    # against the machine's.
    signing_pem = _certificate(signing_key, "sns.amazonaws.com", clock.now()).public_bytes(
        serialization.Encoding.PEM
    )
    tls_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tls_cert = tmp_path / "tls-cert.pem"
    tls_cert.write_bytes(
        _certificate(tls_key, "127.0.0.1", now, server=True).public_bytes(
            serialization.Encoding.PEM
        )
    )
    tls_key_file = tmp_path / "tls-key.pem"
    tls_key_file.write_bytes(
        tls_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    fetched: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            fetched.append(self.path)
            if self.path.endswith(".pem"):
                body, kind = signing_pem, "application/x-pem-file"
            else:
                body, kind = b"<ConfirmSubscriptionResponse/>", "text/xml"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_cert, tls_key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield SnsHost(f"https://127.0.0.1:{server.server_address[1]}", signing_key, tls_cert, fetched)
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings_overrides(sns_host: SnsHost) -> dict[str, Any]:
    return {
        # The certificate server runs on this machine, which requests may not reach else.
        "network": {"allowed_private_networks": ["127.0.0.0/8"]},
        "bounces": {
            "ses_topic_arns": [TOPIC],
            "sns_certificate_hosts": r"127\.0\.0\.1",
            "sns_certificate_ca_file": str(sns_host.tls_ca_file),
            "postmark_username": POSTMARK_USER,
            "postmark_password": POSTMARK_PASSWORD,
            "mailgun_signing_key": MAILGUN_KEY,
        },
    }


# ---- SNS messages, signed as SNS signs them --------------------------------------------

NOTIFICATION_FIELDS = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
CONFIRMATION_FIELDS = [
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
]


def sign_sns(message: dict[str, str], key: rsa.RSAPrivateKey, version: str = "1") -> None:
    names = NOTIFICATION_FIELDS if message["Type"] == "Notification" else CONFIRMATION_FIELDS
    signed = "".join(f"{name}\n{message[name]}\n" for name in names if name in message)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(signed.encode(), padding.PKCS1v15(), algorithm)
    message["SignatureVersion"] = version
    message["Signature"] = base64.b64encode(signature).decode()


def sns_notification(
    sns_host: SnsHost,
    ses_message: dict[str, Any],
    at: datetime,
    *,
    topic: str = TOPIC,
    version: str = "1",
    message_id: str | None = None,
) -> dict[str, str]:
    message = {
        "Type": "Notification",
        "MessageId": message_id or str(uuid.uuid4()),  # SNS gives each message its own
        "TopicArn": topic,
        "Message": json.dumps(ses_message),
        "Timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "SigningCertURL": sns_host.certificate_url,
        "UnsubscribeURL": f"{sns_host.base}/?Action=Unsubscribe",
    }
    sign_sns(message, sns_host.signing_key, version)
    return message


def ses_bounce(address: str, status: str = "5.1.1", source: str = "bounces@example.org") -> dict:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": address,
                    "action": "failed",
                    "status": status,
                    "diagnosticCode": f"smtp; 550 {status} <{address}>: Recipient address rejected",
                }
            ],
            "timestamp": "2026-11-26T01:00:00.000Z",
            "feedbackId": "0100017abc-bounce",
        },
        "mail": {"source": source, "destination": [address], "messageId": "0100017abc"},
    }


def ses_complaint(address: str, feedback: str | None = "abuse") -> dict:
    complaint: dict[str, Any] = {
        "complainedRecipients": [{"emailAddress": address}],
        "timestamp": "2026-11-26T01:00:00.000Z",
        "feedbackId": "0100017abc-complaint",
    }
    if feedback is not None:
        complaint["complaintFeedbackType"] = feedback
    return {
        "notificationType": "Complaint",
        "complaint": complaint,
        "mail": {"source": "bounces@example.org", "destination": [address]},
    }


def post_sns(client: TestClient, message: dict[str, str]) -> Any:
    # SNS posts its JSON as text/plain.
    return client.post(
        "/webhooks/bounces/ses",
        content=json.dumps(message),
        headers={
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": message["Type"],
        },
    )


# ---- readers and what became of them ---------------------------------------------------


def import_readers(services: Services, clock: FrozenClock, *emails: str) -> None:
    """Readers of `news` brought in by a CSV import (with their consent events)."""
    csv = io.StringIO("email\n" + "".join(f"{email}\n" for email in emails))
    report = transfer.import_csv(services.engine, csv, "news", "test", clock.now)
    assert not report.skipped


def subscriber(services: Services, email: str) -> Subscriber:
    with session_scope(services.engine) as session:
        found = session.exec(select(Subscriber).where(col(Subscriber.email) == email)).one()
        return found


def suppression_reason(services: Services, email: str) -> str | None:
    subscriber_id = subscriber(services, email).id
    with session_scope(services.engine) as session:
        entry = session.exec(
            select(Suppression).where(col(Suppression.subscriber_id) == subscriber_id)
        ).first()
        return entry.reason if entry is not None else None


def statuses(services: Services, email: str) -> list[str]:
    subscriber_id = subscriber(services, email).id
    with session_scope(services.engine) as session:
        rows = session.exec(
            select(Subscription).where(col(Subscription.subscriber_id) == subscriber_id)
        ).all()
        return [row.status for row in rows]


def actions(services: Services, email: str) -> list[str]:
    subscriber_id = subscriber(services, email).id
    with session_scope(services.engine) as session:
        rows = session.exec(
            select(ConsentEvent)
            .where(col(ConsentEvent.subscriber_id) == subscriber_id)
            .order_by(col(ConsentEvent.id))
        ).all()
        return [row.action for row in rows]


def nothing_written(services: Services) -> bool:
    return count_rows(services, BounceEvent) == 0 and count_rows(services, Suppression) == 0


# ---- Amazon SES via SNS ----------------------------------------------------------------


@pytest.mark.both_databases
def test_a_signed_ses_hard_bounce_suppresses_the_address(
    client: TestClient, services: Services, clock: FrozenClock, sns_host: SnsHost
) -> None:
    import_readers(services, clock, READER, OTHER_READER)
    answer = post_sns(client, sns_notification(sns_host, ses_bounce(READER), clock.now()))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"reports": 1, "recorded": 1, "already_processed": False}
    assert suppression_reason(services, READER) == "hard-bounce"
    assert suppression_reason(services, OTHER_READER) is None
    with session_scope(services.engine) as session:
        [event] = session.exec(select(BounceEvent)).all()
    assert (event.kind, event.status, event.source) == ("hard", "5.1.1", "ses")
    assert READER not in event.detail


def test_signature_version_2_is_checked_with_sha256(
    client: TestClient, services: Services, clock: FrozenClock, sns_host: SnsHost
) -> None:
    import_readers(services, clock, READER)
    message = sns_notification(sns_host, ses_bounce(READER), clock.now(), version="2")
    assert post_sns(client, message).status_code == 200
    assert suppression_reason(services, READER) == "hard-bounce"


def test_a_policy_refusal_alerts_the_operator_and_keeps_the_reader(
    client: TestClient,
    services: Services,
    clock: FrozenClock,
    sns_host: SnsHost,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import_readers(services, clock, READER)
    caplog.set_level(logging.INFO)
    message = sns_notification(sns_host, ses_bounce(READER, "5.7.26"), clock.now())
    assert post_sns(client, message).json() == {
        "reports": 1,
        "recorded": 1,
        "already_processed": False,
    }
    assert suppression_reason(services, READER) is None
    assert statuses(services, READER) == [SubscriptionStatus.confirmed]
    alerts = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert alerts and "5.7.26" in alerts[0].getMessage()
    assert READER not in caplog.text


def test_a_transient_bounce_without_a_status_is_soft(
    client: TestClient, services: Services, clock: FrozenClock, sns_host: SnsHost
) -> None:
    import_readers(services, clock, READER)
    ses_message = ses_bounce(READER)
    ses_message["bounce"]["bounceType"] = "Transient"
    ses_message["bounce"]["bounceSubType"] = "MailboxFull"
    recipient = ses_message["bounce"]["bouncedRecipients"][0]
    del recipient["status"]
    recipient["diagnosticCode"] = "mailbox over quota"
    assert post_sns(client, sns_notification(sns_host, ses_message, clock.now())).status_code == 200
    with session_scope(services.engine) as session:
        [event] = session.exec(select(BounceEvent)).all()
    assert event.kind == "soft"
    assert suppression_reason(services, READER) is None


@pytest.mark.both_databases
def test_a_signed_ses_complaint_unsubscribes_suppresses_and_records_consent(
    client: TestClient, services: Services, clock: FrozenClock, sns_host: SnsHost
) -> None:
    import_readers(services, clock, READER)
    # No feedback type: SES leaves it out when the mailbox provider gave none.
    message = sns_notification(sns_host, ses_complaint(READER, feedback=None), clock.now())
    answer = post_sns(client, message)
    assert answer.status_code == 200, answer.text
    assert suppression_reason(services, READER) == "complaint"
    assert statuses(services, READER) == [SubscriptionStatus.unsubscribed]
    assert actions(services, READER)[-1] == ConsentAction.unsubscribed


def test_a_not_spam_report_changes_nothing(
    client: TestClient, services: Services, clock: FrozenClock, sns_host: SnsHost
) -> None:
    import_readers(services, clock, READER)
    message = sns_notification(sns_host, ses_complaint(READER, "not-spam"), clock.now())
    answer = post_sns(client, message)
    assert answer.json() == {"reports": 1, "recorded": 0, "already_processed": False}
    assert statuses(services, READER) == [SubscriptionStatus.confirmed]
    assert nothing_written(services)


def test_a_tampered_message_is_refused_and_nothing_is_written(
    client: TestClient, services: Services, clock: FrozenClock, sns_host: SnsHost
) -> None:
    import_readers(services, clock, READER, OTHER_READER)
    message = sns_notification(sns_host, ses_bounce(OTHER_READER), clock.now())
    message["Message"] = json.dumps(ses_bounce(READER))
    answer = post_sns(client, message)
    assert answer.status_code == 403
    assert "signature" in answer.json()["detail"]
    assert nothing_written(services)


def test_a_topic_not_configured_is_refused_before_any_fetch(
    client: TestClient, services: Services, clock: FrozenClock, sns_host: SnsHost
) -> None:
    import_readers(services, clock, READER)
    other_topic = "arn:aws:sns:eu-west-1:999999999999:someone-else"
    answer = post_sns(
        client, sns_notification(sns_host, ses_bounce(READER), clock.now(), topic=other_topic)
    )
    assert answer.status_code == 403
    assert sns_host.fetched == []
    assert nothing_written(services)


def test_a_certificate_on_another_host_is_never_fetched(
    client: TestClient, services: Services, clock: FrozenClock, sns_host: SnsHost
) -> None:
    import_readers(services, clock, READER)
    message = sns_notification(sns_host, ses_bounce(READER), clock.now())
    # localhost is the same server, but not a host the pattern allows.
    message["SigningCertURL"] = message["SigningCertURL"].replace("127.0.0.1", "localhost")
    answer = post_sns(client, message)
    assert answer.status_code == 403
    assert sns_host.fetched == []
    assert nothing_written(services)


def test_a_notification_older_than_an_hour_is_refused_as_a_replay(
    client: TestClient, services: Services, clock: FrozenClock, sns_host: SnsHost
) -> None:
    import_readers(services, clock, READER)
    message = sns_notification(sns_host, ses_bounce(READER), clock.now())
    assert post_sns(client, message).status_code == 200
    clock.advance(hours=1, minutes=1)
    before = count_rows(services, BounceEvent)
    answer = post_sns(client, message)
    assert answer.status_code == 403
    assert "hour" in answer.json()["detail"]
    assert count_rows(services, BounceEvent) == before


def test_the_signing_certificate_is_fetched_once(
    client: TestClient, services: Services, clock: FrozenClock, sns_host: SnsHost
) -> None:
    import_readers(services, clock, READER, OTHER_READER)
    for email in (READER, OTHER_READER):
        message = sns_notification(sns_host, ses_bounce(email, "4.2.2"), clock.now())
        assert post_sns(client, message).status_code == 200
    assert [path for path in sns_host.fetched if path.endswith(".pem")] == [
        "/SimpleNotificationService-0123456789abcdef.pem"
    ]
    assert count_rows(services, BounceEvent) == 2
    assert suppression_reason(services, READER) is None  # one soft bounce is not enough


def test_a_subscription_confirmation_fetches_the_subscribe_url_once(
    client: TestClient, services: Services, clock: FrozenClock, sns_host: SnsHost
) -> None:
    message = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a",
        "TopicArn": TOPIC,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
        "SubscribeURL": f"{sns_host.base}/?Action=ConfirmSubscription&Token=2336412f",
        "Timestamp": clock.now().strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "SigningCertURL": sns_host.certificate_url,
    }
    sign_sns(message, sns_host.signing_key)
    answer = post_sns(client, message)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"reports": 0, "recorded": 0, "already_processed": False}
    confirmations = [p for p in sns_host.fetched if "ConfirmSubscription" in p]
    assert confirmations == ["/?Action=ConfirmSubscription&Token=2336412f"]


def test_a_subscribe_url_on_another_host_is_not_fetched(
    client: TestClient, clock: FrozenClock, sns_host: SnsHost
) -> None:
    message = {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9",
        "Token": "2336412f",
        "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe.",
        "SubscribeURL": "https://internal.example.net/admin?drop=everything",
        "Timestamp": clock.now().strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "SigningCertURL": sns_host.certificate_url,
    }
    sign_sns(message, sns_host.signing_key)
    assert post_sns(client, message).status_code == 403
    assert not any("drop" in path for path in sns_host.fetched)


def test_a_bounce_names_its_message_through_the_verp_return_path(
    client: TestClient, services: Services, clock: FrozenClock, sns_host: SnsHost
) -> None:
    signed_up = client.post("/subscribe", json={"email": READER})
    assert signed_up.status_code == 202
    with session_scope(services.engine) as session:
        [outbox] = session.exec(select(OutboxMessage)).all()
    assert outbox.id is not None
    verp = f"bounces+{services.signer.return_path_tag(outbox.id)}@example.org"
    # The provider spells the address differently; the signed tag still finds the reader.
    ses_message = ses_bounce(READER.upper(), source=verp)
    assert post_sns(client, sns_notification(sns_host, ses_message, clock.now())).status_code == 200
    with session_scope(services.engine) as session:
        [event] = session.exec(select(BounceEvent)).all()
    assert event.outbox_id == outbox.id
    assert event.subscriber_id == subscriber(services, READER).id


def test_malformed_sns_bodies_are_400(client: TestClient, services: Services) -> None:
    assert post_sns_raw(client, b"{not json").status_code == 400
    assert post_sns_raw(client, b'["a list"]').status_code == 400
    assert post_sns_raw(client, b'{"Type": "Notification"}').status_code == 400
    assert post_sns_raw(client, b'{"Type": ["Notification"]}').status_code == 400
    assert post_sns_raw(client, b"[" * 200_000).status_code == 400
    assert post_sns_raw(client, b"\xff\xfe{}").status_code == 400
    assert nothing_written(services)


def post_sns_raw(client: TestClient, body: bytes) -> Any:
    return client.post(
        "/webhooks/bounces/ses", content=body, headers={"Content-Type": "text/plain"}
    )


# ---- Postmark --------------------------------------------------------------------------


def postmark_auth(user: str = POSTMARK_USER, password: str = POSTMARK_PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def postmark_bounce(email: str, bounce_type: str = "HardBounce", details: str = "") -> dict:
    return {
        "RecordType": "Bounce",
        "MessageStream": "broadcast",
        "ID": 4323372036854775807,
        "Type": bounce_type,
        "TypeCode": 1,
        "Name": "Hard bounce",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Description": "The server was unable to deliver your message.",
        "Details": details or "smtp;550 5.1.1 The email account does not exist",
        "Email": email,
        "From": "news@example.org",
        "BouncedAt": "2026-11-26T01:00:00Z",
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Morning Brief",
    }


def test_a_postmark_hard_bounce_with_the_right_credentials_suppresses(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    import_readers(services, clock, READER)
    answer = client.post(
        "/webhooks/bounces/postmark",
        json=postmark_bounce(READER),
        headers={"Authorization": postmark_auth()},
    )
    assert answer.status_code == 200, answer.text
    assert suppression_reason(services, READER) == "hard-bounce"


@pytest.mark.both_databases
def test_a_postmark_soft_bounce_suppresses_only_after_repeats(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    import_readers(services, clock, READER)
    soft = [
        {**postmark_bounce(READER, "SoftBounce", "Mailbox full"), "ID": 1000 + n}
        for n in range(services.settings.bounces.soft_limit)
    ]
    for record in soft[:-1]:
        client.post(
            "/webhooks/bounces/postmark", json=record, headers={"Authorization": postmark_auth()}
        )
    assert suppression_reason(services, READER) is None
    client.post(
        "/webhooks/bounces/postmark", json=soft[-1], headers={"Authorization": postmark_auth()}
    )
    assert suppression_reason(services, READER) == "soft-bounce"


def test_a_postmark_spam_complaint_unsubscribes_and_suppresses(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    import_readers(services, clock, READER)
    complaint = {"RecordType": "SpamComplaint", "Type": "SpamComplaint", "TypeCode": 512}
    answer = client.post(
        "/webhooks/bounces/postmark",
        json={**complaint, "Email": READER},
        headers={"Authorization": postmark_auth()},
    )
    assert answer.status_code == 200
    assert statuses(services, READER) == [SubscriptionStatus.unsubscribed]
    assert suppression_reason(services, READER) == "complaint"


@pytest.mark.parametrize(
    "authorization",
    [None, postmark_auth(password="guess"), postmark_auth(user="admin"), "Basic !!!", "Bearer x"],
)
def test_postmark_without_the_right_credentials_is_401_and_writes_nothing(
    client: TestClient, services: Services, clock: FrozenClock, authorization: str | None
) -> None:
    import_readers(services, clock, READER)
    headers = {"Authorization": authorization} if authorization else {}
    answer = client.post(
        "/webhooks/bounces/postmark", json=postmark_bounce(READER), headers=headers
    )
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic")
    assert nothing_written(services)


def test_postmark_records_it_does_not_act_on_are_accepted_and_ignored(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    import_readers(services, clock, READER)
    for record in (
        postmark_bounce(READER, "AutoResponder", "I am on holiday"),
        {"RecordType": "Delivery", "Recipient": READER},
    ):
        answer = client.post(
            "/webhooks/bounces/postmark", json=record, headers={"Authorization": postmark_auth()}
        )
        assert answer.status_code == 200
        assert answer.json()["recorded"] == 0
    assert nothing_written(services)


# ---- Mailgun ---------------------------------------------------------------------------


def mailgun_event(event: dict[str, Any], at: datetime, key: str = MAILGUN_KEY) -> dict:
    timestamp = str(int(at.timestamp()))
    token = hashlib.sha256(json.dumps(event).encode() + timestamp.encode()).hexdigest()[:50]
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event,
    }


def mailgun_failure(email: str, severity: str = "permanent") -> dict:
    return {
        "event": "failed",
        "severity": severity,
        "reason": "bounce",
        "recipient": email,
        "envelope": {"sender": "bounces@example.org", "targets": email},
        "delivery-status": {
            "code": 550,
            "enhanced-code": "5.1.1",
            "message": "5.1.1 The email account that you tried to reach does not exist.",
        },
    }


def test_a_signed_mailgun_permanent_failure_suppresses(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    import_readers(services, clock, READER)
    answer = client.post(
        "/webhooks/bounces/mailgun", json=mailgun_event(mailgun_failure(READER), clock.now())
    )
    assert answer.status_code == 200, answer.text
    assert suppression_reason(services, READER) == "hard-bounce"


def test_a_mailgun_complaint_unsubscribes(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    import_readers(services, clock, READER)
    event = {"event": "complained", "recipient": READER}
    answer = client.post("/webhooks/bounces/mailgun", json=mailgun_event(event, clock.now()))
    assert answer.status_code == 200
    assert statuses(services, READER) == [SubscriptionStatus.unsubscribed]


def test_a_mailgun_temporary_failure_is_soft(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    import_readers(services, clock, READER)
    event = mailgun_failure(READER, severity="temporary")
    event["delivery-status"] = {"code": 452, "message": "4.2.2 Mailbox full"}
    answer = client.post("/webhooks/bounces/mailgun", json=mailgun_event(event, clock.now()))
    assert answer.status_code == 200
    with session_scope(services.engine) as session:
        [recorded] = session.exec(select(BounceEvent)).all()
    assert (recorded.kind, recorded.status, recorded.action) == ("soft", "4.2.2", "delayed")
    assert suppression_reason(services, READER) is None


def test_mailgun_with_a_wrong_key_or_an_old_signature_is_403_and_writes_nothing(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    import_readers(services, clock, READER)
    forged = mailgun_event(mailgun_failure(READER), clock.now(), key="not-the-key")
    assert client.post("/webhooks/bounces/mailgun", json=forged).status_code == 403
    old = mailgun_event(mailgun_failure(READER), clock.now() - timedelta(minutes=16))
    assert client.post("/webhooks/bounces/mailgun", json=old).status_code == 403
    unsigned = {"event-data": mailgun_failure(READER)}
    assert client.post("/webhooks/bounces/mailgun", json=unsigned).status_code == 403
    assert nothing_written(services)


# ---- the endpoint ----------------------------------------------------------------------


def test_an_unknown_provider_is_404(client: TestClient) -> None:
    assert client.post("/webhooks/bounces/sendgrid", json={}).status_code == 404


def test_a_body_over_256_kilobytes_is_413(client: TestClient, services: Services) -> None:
    answer = client.post(
        "/webhooks/bounces/postmark",
        content=b"{" + b" " * (300 * 1024) + b"}",
        headers={"Authorization": postmark_auth(), "Content-Type": "application/json"},
    )
    assert answer.status_code == 413
    assert nothing_written(services)


def test_the_endpoint_is_in_the_openapi_schema_with_its_answers(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/webhooks/bounces/{provider}"]["post"]
    assert {"200", "400", "401", "403", "404", "413"} <= set(operation["responses"])
    assert "text/plain" in operation["requestBody"]["content"]


@pytest.mark.parametrize("settings_overrides", [{}])
def test_providers_not_configured_are_404(client: TestClient, services: Services) -> None:
    for provider in ("ses", "postmark", "mailgun"):
        answer = client.post(
            f"/webhooks/bounces/{provider}",
            json=postmark_bounce(READER),
            headers={"Authorization": postmark_auth()},
        )
        assert answer.status_code == 404, provider
    assert nothing_written(services)


# ---- replays: each notification is acted on once ----------------------------------------


def resigned(notification: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """A captured Mailgun signature put on another event (it covers timestamp and token
    only, so it still checks out)."""
    return {"signature": dict(notification["signature"]), "event-data": event}


def bounce_events(services: Services) -> int:
    return count_rows(services, BounceEvent)


def mailgun_complaint(email: str) -> dict[str, Any]:
    return {"event": "complained", "recipient": email, "id": f"complaint-{email}"}


@pytest.mark.both_databases
@pytest.mark.parametrize(
    "captured, forged",
    [
        # Its own failure, then its signature on a complaint about another reader.
        (mailgun_failure(READER), mailgun_complaint(OTHER_READER)),
        # The same event about another recipient.
        (mailgun_failure(READER), mailgun_failure(OTHER_READER)),
        # A delivery, which nothing acts on, then its signature on a complaint.
        ({"event": "delivered", "recipient": OTHER_READER}, mailgun_complaint(OTHER_READER)),
        # The same event with only its severity changed.
        (mailgun_failure(OTHER_READER, "temporary"), mailgun_failure(OTHER_READER)),
    ],
    ids=["complaint-about-another", "another-recipient", "after-a-delivery", "other-severity"],
)
def test_a_mailgun_signature_used_again_on_another_event_is_409_and_changes_nothing(
    client: TestClient,
    services: Services,
    clock: FrozenClock,
    captured: dict[str, Any],
    forged: dict[str, Any],
) -> None:
    import_readers(services, clock, READER, OTHER_READER)
    notification = mailgun_event(captured, clock.now())
    assert client.post("/webhooks/bounces/mailgun", json=notification).status_code == 200
    before = (bounce_events(services), count_rows(services, Suppression))
    other_actions = actions(services, OTHER_READER)
    clock.advance(minutes=5)  # well within the signature's 15 minutes

    answer = client.post("/webhooks/bounces/mailgun", json=resigned(notification, forged))

    assert answer.status_code == 409, answer.text
    assert "already used" in answer.json()["detail"]
    assert (bounce_events(services), count_rows(services, Suppression)) == before
    assert statuses(services, OTHER_READER) == [SubscriptionStatus.confirmed]
    assert actions(services, OTHER_READER) == other_actions


@pytest.mark.both_databases
def test_the_same_mailgun_notification_again_is_answered_200_and_changes_nothing(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    import_readers(services, clock, READER)
    notification = mailgun_event(mailgun_complaint(READER), clock.now())
    first = client.post("/webhooks/bounces/mailgun", json=notification)
    assert first.json() == {"reports": 1, "recorded": 1, "already_processed": False}
    reader_actions = actions(services, READER)
    clock.advance(minutes=1)
    # The same bytes, and the same JSON spaced and ordered otherwise.
    for body in (
        json.dumps(notification),
        json.dumps(notification, indent=2, sort_keys=True),
    ):
        again = client.post(
            "/webhooks/bounces/mailgun",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        assert again.status_code == 200, again.text
        assert again.json() == {"reports": 1, "recorded": 0, "already_processed": True}
    assert bounce_events(services) == 1
    assert actions(services, READER) == reader_actions


@pytest.mark.both_databases
def test_a_mailgun_retry_of_an_event_with_a_new_signature_is_acted_on_once(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    import_readers(services, clock, READER)
    event = {**mailgun_failure(READER, "temporary"), "id": "Ase7i2zsRYeDXztHGENqRA"}
    first = client.post("/webhooks/bounces/mailgun", json=mailgun_event(event, clock.now()))
    assert first.status_code == 200
    clock.advance(minutes=10)  # Mailgun's first retry, signed anew
    retry = client.post("/webhooks/bounces/mailgun", json=mailgun_event(event, clock.now()))
    assert retry.status_code == 200
    assert retry.json()["already_processed"] is True
    assert bounce_events(services) == 1


@pytest.mark.both_databases
def test_used_tokens_are_purged_once_their_signatures_have_expired(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    import_readers(services, clock, READER)
    notification = mailgun_event(mailgun_failure(READER, "temporary"), clock.now())
    client.post("/webhooks/bounces/mailgun", json=notification)
    assert count_rows(services, ProviderNotificationToken) == 1
    clock.advance(minutes=20)
    purge_job(services)
    assert count_rows(services, ProviderNotificationToken) == 1, "kept while clocks may differ"
    clock.advance(minutes=11)
    purge_job(services)
    assert count_rows(services, ProviderNotificationToken) == 0
    # The signature's own window refuses it from then on.
    assert client.post("/webhooks/bounces/mailgun", json=notification).status_code == 403
    assert bounce_events(services) == 1


@pytest.mark.both_databases
def test_two_processes_taking_one_notification_at_once_act_on_it_once(
    client: TestClient, services: Services, clock: FrozenClock, settings: config.Settings
) -> None:
    import_readers(services, clock, READER)
    notification = mailgun_event(mailgun_complaint(READER), clock.now())
    other = build(settings, clock=clock)
    barrier = threading.Barrier(4)
    answers: list[Any] = []

    def post(test_client: TestClient) -> None:
        barrier.wait()
        answers.append(test_client.post("/webhooks/bounces/mailgun", json=notification))

    with TestClient(create_app(other, run_scheduler=False)) as other_client:
        threads = [
            threading.Thread(target=post, args=(c,))
            for c in (client, other_client, client, other_client)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    other.engine.dispose()
    assert [a.status_code for a in answers] == [200] * 4
    assert sorted(a.json()["already_processed"] for a in answers) == [False, True, True, True]
    assert bounce_events(services) == 1
    assert actions(services, READER).count(ConsentAction.unsubscribed) == 1


@pytest.mark.both_databases
def test_the_same_ses_notification_again_is_acted_on_once(
    client: TestClient, services: Services, clock: FrozenClock, sns_host: SnsHost
) -> None:
    import_readers(services, clock, READER)
    ses_message = ses_bounce(READER, "4.2.2")  # soft: each one would count to the limit
    message = sns_notification(sns_host, ses_message, clock.now())
    assert post_sns(client, message).json()["already_processed"] is False
    for _ in range(services.settings.bounces.soft_limit):
        clock.advance(minutes=5)  # SNS retries, or a replay within the hour
        again = post_sns(client, message)
        assert again.status_code == 200
        assert again.json() == {"reports": 1, "recorded": 0, "already_processed": True}
    assert bounce_events(services) == 1
    assert suppression_reason(services, READER) is None


@pytest.mark.both_databases
def test_another_ses_message_under_a_used_message_id_is_409(
    client: TestClient, services: Services, clock: FrozenClock, sns_host: SnsHost
) -> None:
    import_readers(services, clock, READER, OTHER_READER)
    first = sns_notification(sns_host, ses_bounce(READER), clock.now())
    assert post_sns(client, first).status_code == 200
    second = sns_notification(
        sns_host, ses_complaint(OTHER_READER), clock.now(), message_id=first["MessageId"]
    )
    answer = post_sns(client, second)
    assert answer.status_code == 409
    assert statuses(services, OTHER_READER) == [SubscriptionStatus.confirmed]
    assert bounce_events(services) == 1


@pytest.mark.both_databases
def test_the_same_postmark_record_again_is_acted_on_once(
    client: TestClient, services: Services, clock: FrozenClock
) -> None:
    import_readers(services, clock, READER)
    complaint = {
        "RecordType": "SpamComplaint",
        "Type": "SpamComplaint",
        "ID": 42,
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Email": READER,
        "BouncedAt": "2026-11-26T01:00:00Z",
    }
    headers = {"Authorization": postmark_auth()}
    assert (
        client.post("/webhooks/bounces/postmark", json=complaint, headers=headers).json()[
            "recorded"
        ]
        == 1
    )
    reader_actions = actions(services, READER)
    clock.advance(days=2)  # Postmark signs no time: a record is known by its ID for 30 days
    again = client.post("/webhooks/bounces/postmark", json=complaint, headers=headers)
    assert again.status_code == 200
    assert again.json()["already_processed"] is True
    assert actions(services, READER) == reader_actions
    assert bounce_events(services) == 1


@pytest.mark.both_databases
@pytest.mark.parametrize(
    "changed",
    [{"Email": OTHER_READER}, {"Type": "HardBounce", "Email": OTHER_READER}],
    ids=["another-recipient", "another-kind"],
)
def test_another_postmark_record_under_a_used_id_is_409(
    client: TestClient, services: Services, clock: FrozenClock, changed: dict[str, str]
) -> None:
    import_readers(services, clock, READER, OTHER_READER)
    headers = {"Authorization": postmark_auth()}
    record = postmark_bounce(READER, "SoftBounce", "Mailbox full")
    assert (
        client.post("/webhooks/bounces/postmark", json=record, headers=headers).status_code == 200
    )
    answer = client.post("/webhooks/bounces/postmark", json={**record, **changed}, headers=headers)
    assert answer.status_code == 409
    assert suppression_reason(services, OTHER_READER) is None
    assert bounce_events(services) == 1
