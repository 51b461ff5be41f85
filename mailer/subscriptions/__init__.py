"""Subscribers, subscriptions and their consent: signup, confirm, leave, import, erase."""
