"""Amazon SES bounce and complaint notifications, delivered by SNS.

Every SNS message is checked before anything is read from it: its topic must be one of
`[bounces] ses_topic_arns`, its Timestamp no more than an hour away, and its signature
(SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA, over the fields SNS signs) must verify
with the certificate at its SigningCertURL, which must be https on a host matching
`sns_certificate_hosts`. A subscription is confirmed by fetching its SubscribeURL, on such
a host too. Both are fetched through mailer.outbound, so a host that resolves to a private
address is refused (403) without being fetched. A notification's Message is SES's JSON:
bounces and complaints become Reports. The signature covers the whole notification, so
it cannot be moved to another body; the same notification again (SNS retries, or a
replay within the hour) is known by its MessageId and acted on once
(mailer.bounces.replay).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mailer.bounces.classify import find_status
from mailer.bounces.handling import Report
from mailer.bounces.providers.base import (
    Notification,
    Refused,
    json_object,
    mapping,
    objects,
    text,
)
from mailer.bounces.replay import Identity, Key, canonical
from mailer.bounces.verp import outbox_id_in
from mailer.clock import Clock
from mailer.config import BounceSettings
from mailer.outbound import REFUSED, Outbound, PrivateAddress, tls_context
from mailer.tokens import Signer

log = logging.getLogger(__name__)

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"
SIGNED_FIELDS = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SIGNED_FIELDS[UNSUBSCRIBE_CONFIRMATION] = SIGNED_FIELDS[SUBSCRIPTION_CONFIRMATION]
OPTIONAL_FIELDS = {"Subject"}
SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
MAX_AGE = timedelta(hours=1)
MESSAGE_KEPT = MAX_AGE + timedelta(minutes=15)
"""How long past its Timestamp an acted-on MessageId is remembered: past the hour after
which the Timestamp is refused, with room for clocks that differ between processes."""
CERTIFICATE_MAX_BYTES = 65_536
CONFIRMATION_MAX_BYTES = 65_536
CACHED_CERTIFICATES = 32
HTTP_TIMEOUT_SECONDS = 10.0

HARD_SUBTYPES = {"General", "NoEmail", "Suppressed", "OnAccountSuppressionList"}
"""Permanent bounces whose subtype says the address is dead even without a status."""
ADDRESS_GONE = "5.1.1"
TRANSIENT = "4.0.0"


def canonical_string(message: Mapping[str, Any]) -> bytes:
    """The bytes SNS signs: "Name\\nvalue\\n" for each signed field present, in order."""
    lines: list[str] = []
    for name in SIGNED_FIELDS[str(message["Type"])]:
        if name in OPTIONAL_FIELDS and name not in message:
            continue
        lines.append(f"{name}\n{message[name]}\n")
    return "".join(lines).encode()


class SesReceiver:
    """POST /webhooks/bounces/ses: SNS messages for the configured SES topics."""

    name = "ses"

    def __init__(
        self, settings: BounceSettings, signer: Signer, clock: Clock, outbound: Outbound
    ) -> None:
        self.settings = settings
        self.signer = signer
        self.clock = clock
        self.outbound = outbound
        self.hosts = re.compile(settings.sns_certificate_hosts)
        self.tls = tls_context(settings.sns_certificate_ca_file)
        self._certificates: dict[str, rsa.RSAPublicKey] = {}

    @property
    def configured(self) -> bool:
        return bool(self.settings.ses_topic_arns)

    async def receive(self, body: bytes, headers: Mapping[str, str]) -> Notification:
        message = self._fields(json_object(body))
        if message["TopicArn"] not in self.settings.ses_topic_arns:
            raise Refused(403, "this topic is not accepted here")
        sent_at = self._check_time(message["Timestamp"])
        await self._check_signature(message)
        if message["Type"] == SUBSCRIPTION_CONFIRMATION:
            await self._confirm(message["SubscribeURL"])
            return Notification([])
        if message["Type"] == UNSUBSCRIBE_CONFIRMATION:
            log.warning("SNS says this endpoint was unsubscribed from an SES topic")
            return Notification([])
        reports = self.reports(message["Message"])
        if not reports:
            return Notification(reports)
        signed = {name: message[name] for name in SIGNED_FIELDS[NOTIFICATION] if name in message}
        key = Key(f"message:{message['TopicArn']}:{message['MessageId']}", sent_at + MESSAGE_KEPT)
        return Notification(reports, Identity((key,), canonical(signed)))

    def reports(self, ses_message: str) -> list[Report]:
        """The bounces and complaints in an SES notification's Message (none for other
        notifications, such as deliveries)."""
        try:
            notification = json.loads(ses_message)
        except (ValueError, RecursionError):
            return []
        if not isinstance(notification, dict):
            return []
        kind = text(notification.get("notificationType") or notification.get("eventType"))
        mail = mapping(notification.get("mail"))
        if kind == "Bounce":
            bounce = mapping(notification.get("bounce"))
            recipients = objects(bounce.get("bouncedRecipients"))
            outbox_id = self._outbox_id(mail, len(recipients))
            return [self._bounce(bounce, recipient, outbox_id) for recipient in recipients]
        if kind == "Complaint":
            complaint = mapping(notification.get("complaint"))
            recipients = objects(complaint.get("complainedRecipients"))
            outbox_id = self._outbox_id(mail, len(recipients))
            # SES leaves the feedback type out when the mailbox provider gave none; such
            # a report is still the reader pressing "spam".
            feedback = text(complaint.get("complaintFeedbackType"), 32) or "abuse"
            return [
                Report(
                    source=self.name,
                    action=feedback,
                    complaint=True,
                    detail=f"complaint ({feedback})",
                    outbox_id=outbox_id,
                    address=text(recipient.get("emailAddress"), 320),
                )
                for recipient in recipients
            ]
        return []

    def _bounce(
        self, bounce: dict[str, Any], recipient: dict[str, Any], outbox_id: int | None
    ) -> Report:
        bounce_type = text(bounce.get("bounceType"), 32)
        subtype = text(bounce.get("bounceSubType"), 64)
        diagnostic = text(recipient.get("diagnosticCode"))
        status = find_status(text(recipient.get("status"), 32)) or find_status(diagnostic)
        if not status and bounce_type == "Permanent" and subtype in HARD_SUBTYPES:
            status = ADDRESS_GONE
        elif not status and bounce_type == "Transient":
            status = TRANSIENT
        return Report(
            source=self.name,
            status=status,
            action=text(recipient.get("action"), 32) or "failed",
            detail=f"{bounce_type or 'Undetermined'}/{subtype or 'Undetermined'}: {diagnostic}",
            outbox_id=outbox_id,
            address=text(recipient.get("emailAddress"), 320),
        )

    def _outbox_id(self, mail: dict[str, Any], recipients: int) -> int | None:
        """The message, from our VERP return path, when the notification is about one
        recipient (as our messages are)."""
        if recipients != 1:
            return None
        return outbox_id_in(text(mail.get("source"), 320), self.signer)

    def _fields(self, body: dict[str, Any]) -> dict[str, str]:
        kind = body.get("Type")
        if not isinstance(kind, str) or kind not in SIGNED_FIELDS:
            raise Refused(400, "not an SNS message (Type is missing or unknown)")
        required = [
            *(name for name in SIGNED_FIELDS[kind] if name not in OPTIONAL_FIELDS),
            "SignatureVersion",
            "Signature",
            "SigningCertURL",
        ]
        fields: dict[str, str] = {}
        for name in [*required, *(n for n in OPTIONAL_FIELDS if n in body)]:
            value = body.get(name)
            if not isinstance(value, str):
                raise Refused(400, f"the SNS message has no {name}")
            fields[name] = value
        return fields

    def _check_time(self, timestamp: str) -> datetime:
        """The message's Timestamp, when it is within the hour."""
        try:
            at = datetime.fromisoformat(timestamp)
        except ValueError as exc:
            raise Refused(400, "the SNS message's Timestamp is not a time") from exc
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        if abs(self.clock.now() - at) > MAX_AGE:
            raise Refused(403, "the SNS message is more than an hour old (or ahead)")
        return at

    async def _check_signature(self, message: dict[str, str]) -> None:
        algorithm = SIGNATURE_HASHES.get(message["SignatureVersion"])
        if algorithm is None:
            raise Refused(403, "unknown SNS SignatureVersion")
        try:
            signature = base64.b64decode(message["Signature"], validate=True)
        except binascii.Error as exc:
            raise Refused(403, "the SNS signature is not base64") from exc
        key = await self._certificate_key(message["SigningCertURL"])
        try:
            key.verify(signature, canonical_string(message), padding.PKCS1v15(), algorithm())
        except InvalidSignature as exc:
            raise Refused(403, "the SNS signature does not match the message") from exc

    def _on_sns_host(self, url: str) -> bool:
        parts = urlsplit(url)
        return (
            parts.scheme == "https"
            and not parts.username
            and not parts.password
            and bool(parts.hostname)
            and self.hosts.fullmatch(parts.hostname or "") is not None
        )

    async def _certificate_key(self, url: str) -> rsa.RSAPublicKey:
        cached = self._certificates.get(url)
        if cached is not None:
            return cached
        if not self._on_sns_host(url) or not urlsplit(url).path.endswith(".pem"):
            raise Refused(403, "the signing certificate URL is not on an SNS host")
        pem = await self._fetch(url, CERTIFICATE_MAX_BYTES, "the signing certificate")
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError as exc:
            raise Refused(403, "the signing certificate is not an X.509 certificate") from exc
        now = self.clock.now()
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise Refused(403, "the signing certificate has expired or is not yet valid")
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise Refused(403, "the signing certificate's key is not RSA")
        if len(self._certificates) >= CACHED_CERTIFICATES:
            self._certificates.clear()
        self._certificates[url] = key
        return key

    async def _confirm(self, subscribe_url: str) -> None:
        if not self._on_sns_host(subscribe_url):
            raise Refused(403, "the SubscribeURL is not on an SNS host")
        await self._fetch(subscribe_url, CONFIRMATION_MAX_BYTES, "the subscription confirmation")
        log.info("confirmed the SNS subscription to an SES topic")

    async def _fetch(self, url: str, limit: int, what: str) -> bytes:
        """GET the URL (no redirects, at most `limit` bytes); a private address is a 403,
        another failure a 503, so SNS tries again later."""
        try:
            async with (
                self.outbound.async_client(timeout=HTTP_TIMEOUT_SECONDS, verify=self.tls) as client,
                client.stream("GET", url) as answer,
            ):
                if answer.status_code != 200:
                    raise Refused(503, f"{what} could not be fetched (HTTP {answer.status_code})")
                received = bytearray()
                async for chunk in answer.aiter_bytes():
                    received += chunk
                    if len(received) > limit:
                        raise Refused(503, f"{what} is larger than {limit} bytes")
                return bytes(received)
        except PrivateAddress as exc:
            log.warning("fetching %s refused: its host is a private address", what)
            raise Refused(403, f"{what}: {REFUSED}") from exc
        except httpx.HTTPError as exc:
            log.warning("fetching %s failed: %s", what, type(exc).__name__)
            raise Refused(503, f"{what} could not be fetched") from exc
