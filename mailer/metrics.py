"""Prometheus metrics, one registry per app instance (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.signups = Counter("mailer_signups", "Accepted signup requests", registry=r)
        self.signups_rejected = Counter(
            "mailer_signups_rejected", "Signups refused, by reason", ["reason"], registry=r
        )
        self.confirmations = Counter("mailer_confirmations", "Confirmed signups", registry=r)
        self.unsubscribes = Counter("mailer_unsubscribes", "Unsubscribes", registry=r)
        self.mail_sent = Counter(
            "mailer_mail_sent", "Messages accepted by the transport", registry=r
        )
        self.mail_failed = Counter("mailer_mail_failed", "Messages failed for good", registry=r)
        self.mail_deferred = Counter(
            "mailer_mail_deferred", "Messages queued for a retry", registry=r
        )
        self.mail_suppressed = Counter(
            "mailer_mail_suppressed",
            "Addresses suppressed after a refusal in the SMTP dialogue",
            registry=r,
        )
        self.policy_rejections = Counter(
            "mailer_policy_rejections",
            "Messages refused by a receiver's policy (5.7.x): the sending setup needs a look",
            registry=r,
        )
        self.slowdowns = Counter(
            "mailer_relay_slowdowns",
            "421/451 answers (relays asking the sender to slow down)",
            registry=r,
        )
        self.send_rate = Gauge(
            "mailer_send_rate", "Messages per second this sender started recently", registry=r
        )
        self.rate_limit = Gauge(
            "mailer_sender_rate_limit",
            "This sender's current limit in messages per second (0: none)",
            registry=r,
        )
        self.live_senders = Gauge(
            "mailer_live_senders", "Senders sharing the rate limits", registry=r
        )
        self.outbox_depth = Gauge(
            "mailer_outbox_depth", "Messages queued or being sent", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
