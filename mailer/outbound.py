"""Outbound HTTP: every request mailer makes to another server (feed polls, webhook
deliveries, SNS certificates and subscription confirmations) goes through here, and only to
public addresses, or to those in `[network] allowed_private_networks`.

The check is made where the connection is opened, not on the URL: the host is resolved
here, every address it resolves to must be permitted, and the socket is opened to one of
those checked addresses (TLS still verifies the certificate against the host name). So any
spelling of an address (127.1, 0x7f000001, [::ffff:127.0.0.1]), a name that resolves to a
private address, a DNS answer that changes between two lookups and a redirect to an
internal host are all refused before a packet is sent to them.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import anyio.to_thread
import certifi
import httpcore
import httpx

from mailer.config import NetworkSettings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]
"""(host name, port) -> the addresses it resolves to, as strings; socket.gaierror when
it does not resolve. Tests pass a stub; `system_resolver` asks the operating system."""

REFUSED = "refused: private address"
"""What an editor is shown for a destination the policy refuses."""

CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
LOOPBACK_ADDRESSES = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
THIS_MACHINE_NAMES = frozenset(
    {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
)


class PrivateAddress(httpx.ConnectError):
    """The destination resolves to an address the policy refuses; nothing was sent."""

    def __init__(self) -> None:
        super().__init__(REFUSED)


def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses, from the operating system's resolver (getaddrinfo)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@functools.cache
def tls_context(ca_file: str = "") -> ssl.SSLContext:
    """Public CAs (certifi), and the certificates in `ca_file` too when it is set; made once
    per process for each `ca_file` (loading the bundle takes tens of milliseconds), and
    shared read-only by every client."""
    context = ssl.create_default_context(cafile=certifi.where())
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and reaches: mapped (::ffff:a.b.c.d), NAT64
    (64:ff9b::a.b.c.d) or 6to4 (2002:AABB:CCDD::)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def is_public(address: Address) -> bool:
    """True for an address on the public internet; False for loopback, private (RFC 1918),
    link-local, CGNAT, unique-local, site-local, multicast, unspecified, reserved,
    broadcast and documentation addresses, and IPv6 forms that carry one of those."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            return is_public(inner)
        if address.is_site_local:
            return False
    elif address in CGNAT:
        return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
    )


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses outbound requests may go to: public ones, and those in `allowed`."""

    allowed: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: NetworkSettings) -> AddressPolicy:
        """The policy of checked settings (each CIDR was validated as the settings loaded)."""
        return cls(tuple(ipaddress.ip_network(c) for c in settings.allowed_private_networks))

    def permits(self, address: Address) -> bool:
        if is_public(address):
            return True
        forms: list[Address] = [address]
        if isinstance(address, ipaddress.IPv6Address):
            inner = _embedded_ipv4(address)
            if inner is not None:
                forms.append(inner)
        return any(form in network for form in forms for network in self.allowed)


def _literal(host: str) -> list[Address] | None:
    """The addresses a host written as a number means, in any spelling the operating
    system accepts (127.1, 2130706433, 0x7f000001, 017700000001, ::ffff:7f00:1); None
    for a name. Never asks DNS."""
    try:
        infos = socket.getaddrinfo(
            unquote(host), None, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
        )
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    return [ipaddress.ip_address(str(info[4][0])) for info in infos]


def _is_this_machine(name: str) -> bool:
    """localhost, *.localhost and this machine's own host name: loopback, whatever DNS
    says (RFC 6761), so they are never looked up."""
    own = socket.gethostname().lower().rstrip(".")
    return (
        name in THIS_MACHINE_NAMES
        or name.endswith(".localhost")
        or name in (own, own.split(".")[0])
    )


@dataclass
class Outbound:
    """Makes HTTP clients whose every connection is checked against `policy`, resolving
    host names with `resolver`."""

    policy: AddressPolicy
    resolver: Resolver = field(default=system_resolver)

    def known_without_lookup(self, host: str) -> list[Address] | None:
        """The addresses of a host given as an address or as this machine's name; None
        for another name (which only a lookup can tell)."""
        host = host.strip().lower().rstrip(".")
        literal = _literal(host)
        if literal is not None:
            return literal
        if _is_this_machine(host):
            return list(LOOPBACK_ADDRESSES)
        return None

    def refuses_without_lookup(self, host: str) -> bool:
        """True when the host is an address (any spelling) or this machine's name and the
        policy refuses it; a URL that names such a host can be refused when it is entered.
        Other names are checked when connecting."""
        if ":" in host and self.known_without_lookup(host) is None:
            return True  # written like an IPv6 address, yet none the system can read
        known = self.known_without_lookup(host)
        return known is not None and not all(self.policy.permits(a) for a in known)

    def addresses(self, host: str, port: int) -> list[Address]:
        """The addresses to connect to for `host`, every one of them permitted.
        PrivateAddress when any is refused; httpx.ConnectError when none is found."""
        known = self.known_without_lookup(host)
        if known is None:
            if ":" in host or "%" in host:
                raise PrivateAddress()  # an address-like host nothing can read: not public
            try:
                found = self.resolver(host.rstrip("."), port)
                known = [ipaddress.ip_address(text) for text in found]
            except (OSError, UnicodeError, ValueError) as exc:
                raise httpx.ConnectError("the host name did not resolve") from exc
        if not known:
            raise httpx.ConnectError("the host name did not resolve")
        if not all(self.policy.permits(address) for address in known):
            raise PrivateAddress()
        return known

    def client(
        self,
        *,
        timeout: float,
        verify: ssl.SSLContext | None = None,
        follow_redirects: bool = False,
        headers: dict[str, str] | None = None,
    ) -> httpx.Client:
        """A client for blocking code; each redirect hop is checked like the first URL."""
        return httpx.Client(
            transport=_GuardedTransport(self, verify or tls_context()),
            timeout=timeout,
            follow_redirects=follow_redirects,
            headers=headers,
            trust_env=False,
        )

    def async_client(
        self,
        *,
        timeout: float,
        verify: ssl.SSLContext | None = None,
        follow_redirects: bool = False,
        headers: dict[str, str] | None = None,
    ) -> httpx.AsyncClient:
        """A client for async code; each redirect hop is checked like the first URL."""
        return httpx.AsyncClient(
            transport=_AsyncGuardedTransport(self, verify or tls_context()),
            timeout=timeout,
            follow_redirects=follow_redirects,
            headers=headers,
            trust_env=False,
        )


def describe(exc: BaseException) -> str:
    """What an editor is told about a request that failed: the kind of failure only, never
    the connection's details, which would let an editor map a network through it."""
    if isinstance(exc, PrivateAddress):
        return REFUSED
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        if _certificate_refused(exc):
            return "could not connect: the server's TLS certificate is not trusted"
        return "could not connect"
    if isinstance(exc, httpx.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return "not an http(s) URL"
    if isinstance(exc, httpx.TransportError):
        return "the connection failed"
    return "the request failed"


def _certificate_refused(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


# ---- the connection layer: httpcore network backends that resolve and check ----------


def _connect_kwargs(
    timeout: float | None, local_address: str | None, socket_options: Any
) -> dict[str, Any]:
    return {"timeout": timeout, "local_address": local_address, "socket_options": socket_options}


class _GuardedBackend(httpcore.NetworkBackend):
    """Opens TCP connections only to addresses the Outbound permits."""

    def __init__(self, outbound: Outbound) -> None:
        self.outbound = outbound
        self.inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self.outbound.addresses(host, port)
        kwargs = _connect_kwargs(timeout, local_address, socket_options)
        for address in addresses[:-1]:
            try:
                return self.inner.connect_tcp(str(address), port, **kwargs)
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                continue  # the next address of the name may answer
        return self.inner.connect_tcp(str(addresses[-1]), port, **kwargs)

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise PrivateAddress()

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class _AsyncGuardedBackend(httpcore.AsyncNetworkBackend):
    """The async twin of _GuardedBackend; the lookup runs in a worker thread."""

    def __init__(self, outbound: Outbound) -> None:
        self.outbound = outbound
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await anyio.to_thread.run_sync(self.outbound.addresses, host, port)
        kwargs = _connect_kwargs(timeout, local_address, socket_options)
        for address in addresses[:-1]:
            try:
                return await self.inner.connect_tcp(str(address), port, **kwargs)
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                continue  # the next address of the name may answer
        return await self.inner.connect_tcp(str(addresses[-1]), port, **kwargs)

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise PrivateAddress()

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


# httpx's transports take no network backend: each builds its connection pool, which is
# built again here with the checking backend (same limits as httpx's defaults, no proxy).
# The pool still names the URL's host to TLS, so SNI and the certificate check use it.


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, outbound: Outbound, verify: ssl.SSLContext) -> None:
        super().__init__(verify=verify, trust_env=False)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._pool = httpcore.ConnectionPool(
            ssl_context=verify,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=5.0,
            network_backend=_GuardedBackend(outbound),
        )


class _AsyncGuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, outbound: Outbound, verify: ssl.SSLContext) -> None:
        super().__init__(verify=verify, trust_env=False)
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=verify,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=5.0,
            network_backend=_AsyncGuardedBackend(outbound),
        )
