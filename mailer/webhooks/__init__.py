"""Outgoing webhooks: events queued in the caller's transaction, delivered signed and retried."""
