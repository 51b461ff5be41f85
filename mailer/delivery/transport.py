"""Transports hand finished messages to the world: SMTP (aiosmtplib) or a local Maildir."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Protocol

import aiosmtplib

from mailer.config import SmtpSettings


class DeliveryError(Exception):
    """A message was not accepted. `permanent` says whether retrying is pointless."""

    def __init__(self, reply: str, permanent: bool) -> None:
        super().__init__(reply)
        self.reply = reply
        self.permanent = permanent


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
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        self._counter = 0

    async def send(self, sender: str, recipient: str, message: bytes) -> str:
        self._counter += 1
        name = f"{time.time_ns()}.{os.getpid()}_{self._counter}.{socket.gethostname()}.eml"
        tmp = self.path / "tmp" / name
        tmp.write_bytes(b"Return-Path: <" + sender.encode() + b">\r\n" + message)
        tmp.rename(self.path / "new" / name)
        return f"250 written to {self.path / 'new' / name}"

    async def close(self) -> None:
        return None

    def describe(self) -> str:
        return f"maildir {self.path / 'new'}"


class SmtpTransport:
    """One persistent SMTP connection, reopened when it drops."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._client: aiosmtplib.SMTP | None = None

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            timeout=s.timeout_seconds,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
        )
        await client.connect()
        if s.username:
            await client.login(s.username, s.password.get_secret_value())
        self._client = client
        return client

    async def send(self, sender: str, recipient: str, message: bytes) -> str:
        try:
            client = await self._connected()
            errors, reply = await client.sendmail(sender, [recipient], message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusal = exc.recipients[0]
            raise DeliveryError(
                f"{refusal.code} {refusal.message}", permanent=refusal.code >= 500
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            await self._drop()
            raise DeliveryError(f"{exc.code} {exc.message}", permanent=exc.code >= 500) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self._drop()
            raise DeliveryError(f"connection: {exc}", permanent=False) from exc
        return reply

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            # The connection is being discarded; a failure to close it changes nothing.
            with contextlib.suppress(Exception):
                client.close()

    async def close(self) -> None:
        if self._client is not None and self._client.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException):
                await self._client.quit()
        await self._drop()

    def describe(self) -> str:
        return f"smtp {self.settings.host}:{self.settings.port} ({self.settings.security})"


def make_transport(settings: SmtpSettings, maildir: Path) -> Transport:
    if settings.transport == "smtp":
        return SmtpTransport(settings)
    return MaildirTransport(maildir)
