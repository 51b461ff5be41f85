"""The bounce mailbox poller (`mailer bounces poll`, and inside `mailer serve` when
`[bounces] imap_host` is set): reads DSNs and ARF reports from an IMAP folder.

Each poll logs in, reads every message not yet deleted without marking it seen, hands it
to the intake, and flags it deleted only after its reports are committed; the folder is
expunged at the end. A crash in between re-reads a message rather than loses it. Mail
that carries no report (auto-replies, unreadable mail) is deleted too: the mailbox is
the machine's, and what it held is counted and logged at debug level.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import logging
import ssl
from collections import Counter
from collections.abc import Iterator, Sequence

from mailer.bounces.intake import Intake
from mailer.config import BounceSettings

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 60.0


class MailboxError(Exception):
    """The mailbox could not be reached, logged in to or read (the message says why)."""


class MailboxPoller:
    def __init__(self, intake: Intake, settings: BounceSettings) -> None:
        self.intake = intake
        self.settings = settings

    def poll_once(self) -> Counter[str]:
        """Read and handle every message in the folder; counts them by `Handled.label`
        (plus `failed` for those left for the next poll)."""
        counts: Counter[str] = Counter()
        try:
            with self._session() as imap:
                found = _ok(imap.uid("SEARCH", "UNDELETED"), "search")
                uids = found[0] if found and isinstance(found[0], bytes) else b""
                deleted = 0
                for uid in uids.decode().split():
                    data = _message_bytes(imap.uid("FETCH", uid, "(BODY.PEEK[])"))
                    if data is None:
                        continue
                    try:
                        handled = self.intake.take(data)
                    except Exception as exc:  # the database: the message stays for next time
                        log.error(
                            "could not record a report from the bounce mailbox (%s); "
                            "it is read again at the next poll",
                            type(exc).__name__,
                        )
                        counts["failed"] += 1
                        continue
                    counts[handled.label] += 1
                    _ok(imap.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)"), "flag")
                    deleted += 1
                if deleted:
                    _ok(imap.expunge(), "expunge")
        except (imaplib.IMAP4.error, OSError) as exc:
            raise MailboxError(f"bounce mailbox {self._where()}: {exc}") from exc
        if counts:
            log.info(
                "bounce mailbox: %s",
                ", ".join(f"{count} {label}" for label, count in sorted(counts.items())),
            )
        return counts

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Poll every `imap_interval_seconds` until `stop` is set."""
        log.info(
            "polling the bounce mailbox %s every %g s",
            self._where(),
            self.settings.imap_interval_seconds,
        )
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.poll_once)
            except MailboxError as exc:
                log.warning("%s; trying again in %g s", exc, self.settings.imap_interval_seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.imap_interval_seconds)

    def _where(self) -> str:
        return f"{self.settings.imap_host}:{self.settings.imap_port}/{self.settings.imap_folder}"

    @contextlib.contextmanager
    def _session(self) -> Iterator[imaplib.IMAP4]:
        """Logged in, with the folder selected read-write; logged out afterwards."""
        settings = self.settings
        imap: imaplib.IMAP4
        if settings.imap_security == "tls":
            imap = imaplib.IMAP4_SSL(
                settings.imap_host,
                settings.imap_port,
                ssl_context=ssl.create_default_context(),
                timeout=TIMEOUT_SECONDS,
            )
        else:
            imap = imaplib.IMAP4(settings.imap_host, settings.imap_port, timeout=TIMEOUT_SECONDS)
            if settings.imap_security == "starttls":
                imap.starttls(ssl.create_default_context())
        try:
            imap.login(settings.imap_username, settings.imap_password.get_secret_value())
            _ok(imap.select(_quoted(settings.imap_folder)), "select the folder")
            yield imap
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                imap.logout()


def _ok(answer: tuple[str, Sequence[object]], what: str) -> list[object]:
    status, data = answer
    if status != "OK":
        detail = b" ".join(item for item in data if isinstance(item, bytes)).decode(
            "utf-8", "replace"
        )
        raise imaplib.IMAP4.error(f"cannot {what}: {detail}")
    return list(data)


def _message_bytes(answer: tuple[str, Sequence[object]]) -> bytes | None:
    """The message in a FETCH answer ([(b'1 (UID 1 BODY[] {n}', b'...'), b')']), or None
    when it is gone (another poller expunged it meanwhile)."""
    for item in _ok(answer, "fetch"):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
            return item[1]
    return None


def _quoted(folder: str) -> str:
    if folder.startswith('"') or not any(char in folder for char in ' "\\'):
        return folder
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
