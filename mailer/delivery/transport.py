"""Transports hand finished messages to the world: SMTP (aiosmtplib) or a local Maildir."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import socket
import time
from pathlib import Path
from typing import Protocol

import aiosmtplib

from mailer import files
from mailer.config import RelaySettings, SmtpSettings
from mailer.subscriptions.addresses import wire_address

ENHANCED_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}\b")


class DeliveryError(Exception):
    """A message was not accepted. `permanent` says whether retrying is pointless."""

    def __init__(self, reply: str, permanent: bool) -> None:
        super().__init__(reply)
        self.reply = reply
        self.permanent = permanent

    @property
    def code(self) -> int | None:
        """The SMTP reply code (550), or None for a connection failure."""
        head = self.reply[:3]
        return int(head) if head.isdigit() else None

    @property
    def enhanced_status(self) -> str:
        """The RFC 3463 status in the reply ("5.1.1"), or "" when it has none."""
        match = ENHANCED_STATUS.match(self.reply[4:])
        return match.group(0) if match else ""

    @property
    def asks_to_slow_down(self) -> bool:
        """421 (service busy, closing) and 451 (local error, often rate limiting)."""
        return self.code in (421, 451)


class Transport(Protocol):
    async def send(self, sender: str, recipient: str, message: bytes) -> str:
        """Deliver one message; return the server's reply, or raise DeliveryError."""
        ...

    async def close(self) -> None: ...

    def describe(self) -> str: ...


class MaildirTransport:
    """Writes each message as an .eml file into <path>/new, Maildir-style (tmp, then rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        files.private_directory(path)
        for sub in ("tmp", "new", "cur"):
            files.private_directory(path / sub)
        self._counter = 0

    async def send(self, sender: str, recipient: str, message: bytes) -> str:
        self._counter += 1
        name = f"{time.time_ns()}.{os.getpid()}_{self._counter}.{socket.gethostname()}.eml"
        tmp = self.path / "tmp" / name
        files.write_private(tmp, b"Return-Path: <" + sender.encode() + b">\r\n" + message)
        tmp.rename(self.path / "new" / name)
        return f"250 written to {self.path / 'new' / name}"

    async def close(self) -> None:
        return None

    def describe(self) -> str:
        return f"maildir {self.path / 'new'}"


class RelayUnavailable(Exception):
    """The relay could not be reached or refused the connection; another may take over."""


class SmtpRelay:
    """A pool of persistent connections to one relay, at most `connections` open at once."""

    def __init__(self, settings: RelaySettings, timeout: float, connections: int) -> None:
        self.settings = settings
        self.timeout = timeout
        self.name = f"{settings.host}:{settings.port}"
        self.down_until = 0.0
        """monotonic() time until which this relay is left alone after refusing connections."""
        self.connections = connections
        self._slots = asyncio.Semaphore(connections)
        self._idle: list[aiosmtplib.SMTP] = []
        self._open: set[aiosmtplib.SMTP] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _bind_to_running_loop(self) -> None:
        """Connections belong to one event loop; a new loop (a new asyncio.run) starts afresh."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._slots = asyncio.Semaphore(self.connections)
            self._idle.clear()
            self._open.clear()

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            timeout=self.timeout,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
        )
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
            if s.username:
                await client.login(s.username, s.password.get_secret_value())
        except (aiosmtplib.SMTPException, OSError) as exc:
            with contextlib.suppress(Exception):
                client.close()
            raise RelayUnavailable(f"{self.name}: {exc}") from exc
        self._open.add(client)
        return client

    async def send(self, sender: str, recipient: str, message: bytes) -> str:
        self._bind_to_running_loop()
        async with self._slots:
            reused = bool(self._idle)
            client = self._idle.pop() if reused else await self._connect()
            try:
                return await self._send_on(client, sender, recipient, message)
            except _Dropped as dropped:
                if not reused:
                    raise dropped.error from dropped
            # An idle connection the relay had closed: once more on a fresh one.
            client = await self._connect()
            try:
                return await self._send_on(client, sender, recipient, message)
            except _Dropped as dropped:
                raise dropped.error from dropped

    async def _send_on(
        self, client: aiosmtplib.SMTP, sender: str, recipient: str, message: bytes
    ) -> str:
        """One SMTP transaction: MAIL, RCPT, DATA. The addresses were validated when they
        were stored, so they go out in their wire form (IDNA domain; SMTPUTF8 only for a
        non-ASCII local part); a refusal before DATA is followed by RSET on the same
        connection."""
        sender, recipient = wire_address(sender), wire_address(recipient)
        try:
            mailbox_options, encoding = _mailbox_encoding(client, sender, recipient)
            await _expect(
                client,
                b"MAIL",
                b"FROM:<" + sender.encode(encoding) + b">",
                *mailbox_options,
            )
            await _expect(client, b"RCPT", b"TO:<" + recipient.encode(encoding) + b">")
            response = await client.data(message)
        except _Refused as refused:
            await self._reset(client)
            raise refused.error from refused
        except aiosmtplib.SMTPResponseException as exc:
            self._discard(client)
            raise DeliveryError(f"{exc.code} {exc.message}", permanent=exc.code >= 500) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            self._discard(client)
            error = DeliveryError(f"connection to {self.name}: {exc}", permanent=False)
            raise _Dropped(error) from exc
        self._idle.append(client)
        return f"{response.code} {response.message}"

    async def _reset(self, client: aiosmtplib.SMTP) -> None:
        """After a refused MAIL or RCPT: RSET and keep the connection, or drop it."""
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError):
            self._discard(client)
        else:
            self._idle.append(client)

    def _discard(self, client: aiosmtplib.SMTP) -> None:
        self._open.discard(client)
        # The connection is being discarded; a failure to close it changes nothing.
        with contextlib.suppress(Exception):
            client.close()

    async def close(self) -> None:
        for client in list(self._open):
            if client.is_connected:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    await client.quit()
            self._discard(client)
        self._idle.clear()

    def describe(self) -> str:
        return f"{self.name} ({self.settings.security}, weight {self.settings.weight})"


class _Carrying(Exception):
    """Carries the DeliveryError to report once the connection has been dealt with."""

    def __init__(self, error: DeliveryError) -> None:
        super().__init__(error.reply)
        self.error = error


class _Refused(_Carrying):
    """The relay refused MAIL or RCPT; the connection itself is still usable."""


async def _expect(client: aiosmtplib.SMTP, *command: bytes) -> None:
    """Send a command; a reply other than 250/251 is a refusal of this message."""
    response = await client.execute_command(*command)
    if response.code not in (250, 251):
        raise _Refused(
            DeliveryError(f"{response.code} {response.message}", permanent=response.code >= 500)
        )


def _mailbox_encoding(
    client: aiosmtplib.SMTP, sender: str, recipient: str
) -> tuple[list[bytes], str]:
    """MAIL options and encoding for these addresses: plain ASCII, or SMTPUTF8 when an
    address needs it and the relay offers it."""
    if sender.isascii() and recipient.isascii():
        return [], "ascii"
    if client.supports_extension("smtputf8"):
        return [b"SMTPUTF8"], "utf-8"
    raise _Refused(
        DeliveryError("553 5.6.7 the address needs SMTPUTF8, which the relay does not offer", True)
    )


class _Dropped(_Carrying):
    """The connection broke during a transaction."""


class SmtpTransport:
    """Spreads messages over one or more relays by weight, each with its own connection pool.

    A relay that refuses connections is skipped for `failover_seconds`; its messages go to
    the others. When none can be reached the message is deferred (a temporary failure)."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self.relays = [
            SmtpRelay(relay, settings.timeout_seconds, settings.connections)
            for relay in settings.all_relays
        ]

    def _order(self) -> list[SmtpRelay]:
        """Relays that are up, drawn by weight; then the ones resting, soonest back first."""
        if len(self.relays) == 1:
            return self.relays
        now = time.monotonic()
        up = [relay for relay in self.relays if relay.down_until <= now]
        resting = sorted((r for r in self.relays if r.down_until > now), key=_down_until)
        ordered: list[SmtpRelay] = []
        while up:
            pick = random.choices(up, weights=[r.settings.weight for r in up])[0]
            ordered.append(pick)
            up.remove(pick)
        return ordered + resting

    async def send(self, sender: str, recipient: str, message: bytes) -> str:
        problems = []
        for relay in self._order():
            try:
                return await relay.send(sender, recipient, message)
            except RelayUnavailable as exc:
                relay.down_until = time.monotonic() + self.settings.failover_seconds
                problems.append(str(exc))
        raise DeliveryError(
            "connection failed to every relay: " + "; ".join(problems), permanent=False
        )

    async def close(self) -> None:
        for relay in self.relays:
            await relay.close()

    def describe(self) -> str:
        pools = ", ".join(relay.describe() for relay in self.relays)
        return f"smtp via {pools}; {self.settings.connections} connections each"


def _down_until(relay: SmtpRelay) -> float:
    return relay.down_until


def make_transport(settings: SmtpSettings, maildir: Path) -> Transport:
    if settings.transport == "smtp":
        return SmtpTransport(settings)
    return MaildirTransport(maildir)
