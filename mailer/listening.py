"""The HTTP listening socket, bound before anything else of `mailer serve` starts.

A port already in use (a second `mailer serve`, another program) must stop the command
before it migrates, schedules or sends anything, with one line that names the port.
"""

from __future__ import annotations

import errno
import socket


class CannotListen(Exception):
    """The address and port cannot be listened on; the message says why, in one line."""


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listening_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A socket bound to `host`:`port` and listening, ready to hand to uvicorn."""
    where = _where(host, port)
    if not 0 < port < 65536:
        raise CannotListen(f"port {port} is not a TCP port (1-65535)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise CannotListen(f"cannot listen on {where}: unknown host {host!r}") from exc
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CannotListen(
                f"port {port} is already in use on {host}: is another mailer serve "
                f"running? (choose another with --port)"
            ) from exc
        if exc.errno == errno.EACCES:
            raise CannotListen(f"not allowed to listen on {where} (a port below 1024?)") from exc
        if exc.errno == errno.EADDRNOTAVAIL:
            raise CannotListen(f"cannot listen on {where}: not an address of this machine") from exc
        raise CannotListen(f"cannot listen on {where}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock
