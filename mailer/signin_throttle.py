"""Failed sign-ins to /admin/, throttled so that guessing stays slow without letting anyone
lock a named editor out: a client that keeps failing on one account, or on many, is refused
(429) for a while; everyone else trying that account, its owner too, is only slowed down.

Unknown accounts are counted exactly like real ones, so the answers (and their timing) do
not tell whether an account exists.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailer.config import AdminSettings
from mailer.errors import Invalid
from mailer.ratelimit import SlidingWindowLimiter
from mailer.subscriptions.addresses import normalize_email


@dataclass(frozen=True)
class Verdict:
    """What to do with a sign-in attempt before checking its password."""

    retry_after: float
    """Seconds until this client may try this account again; 0: it may now."""
    delay: float
    """Seconds to hold the attempt (the account has been failing) before checking it."""


def account_key(email: str) -> str:
    """The account a typed address means, however it is spelt: case, spaces around or
    inside it, and an international domain written either way all count as one."""
    try:
        return normalize_email(email).lower()
    except Invalid:
        return "".join(email.split()).lower()


def client_key(ip: str) -> str:
    """The client an address stands for: one IPv4 address, or an IPv6 /64 (one machine
    usually has a whole /64 to pick addresses from)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


class SignInThrottle:
    """Counts failed sign-ins per client, per (client, account) and per account."""

    def __init__(
        self, settings: AdminSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        window = settings.login_window_seconds
        self.per_client_account = SlidingWindowLimiter(settings.login_attempts, window, clock)
        self.per_client = SlidingWindowLimiter(settings.login_attempts_per_ip, window, clock)
        self.per_account = SlidingWindowLimiter(settings.login_attempts, window, clock)
        self.slowdown = settings.login_slowdown_seconds

    def check(self, ip: str, email: str) -> Verdict:
        """Whether this client may try this account now, and how long to hold the try."""
        client, account = client_key(ip), account_key(email)
        retry_after = max(
            self.per_client.blocked(client),
            self.per_client_account.blocked(f"{client} {account}"),
        )
        if retry_after:
            return Verdict(retry_after, 0.0)
        failing = self.per_account.count(account) >= self.per_account.limit
        return Verdict(0.0, self.slowdown if failing else 0.0)

    def failed(self, ip: str, email: str) -> None:
        """Side effect: a failed attempt counted against the client, the pair and the
        account."""
        client, account = client_key(ip), account_key(email)
        self.per_client.hit(client)
        self.per_client_account.hit(f"{client} {account}")
        self.per_account.hit(account)

    def succeeded(self, ip: str, email: str) -> None:
        """Side effect: this client's failures on this account forgotten (its owner got in)."""
        self.per_client_account.forget(f"{client_key(ip)} {account_key(email)}")
