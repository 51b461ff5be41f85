"""Files that hold personal data (the SQLite database, the Maildir, the signing key, CSV
exports): created readable by this user only, whatever the umask, and closed again when
an older version left them open to other users. Knows paths, not settings: which paths
the app's data lives at is `mailer.personal_data`'s."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")
"""Files SQLite keeps beside a database; it creates them with the database file's mode."""


def private_directory(path: Path) -> Path:
    """`path` as a directory, created 0700 when missing (its missing parents as the umask
    says: they are not the app's to close). An existing one is left as it is."""
    if not path.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        # exist_ok: another process may create it at the same moment. The umask can only
        # take bits away from 0700, so the mode holds without a chmod.
        path.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    return path


def create_private_file(path: Path) -> None:
    """Side effect: an empty file at `path`, mode 0600, unless one exists already."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return
    os.close(descriptor)


def open_private(path: Path) -> IO[str]:
    """`path` opened to write CSV text from its start, readable by this user only (0600,
    also when it existed with a wider mode)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        os.fchmod(descriptor, PRIVATE_FILE)
    except BaseException:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "w", newline="", encoding="utf-8")


def write_private(path: Path, content: bytes) -> None:
    """Side effect: a new file at `path` holding `content`, mode 0600 from its first byte."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)


def close_to_others(directories: list[Path], files: list[Path]) -> list[str]:
    """Side effect: each existing one of `directories` made 0700 and of `files` 0600 when
    group or others could read it; one warning names what was open. Returns those names."""
    opened: list[str] = []
    for path, private in [(d, PRIVATE_DIR) for d in directories] + [
        (f, PRIVATE_FILE) for f in files
    ]:
        was = _restrict(path, private)
        if was is not None:
            opened.append(f"{path} (was {was:o})")
    if opened:
        log.warning(
            "closed to other users, as they hold readers' personal data: %s", ", ".join(opened)
        )
    return opened


def _restrict(path: Path, private: int) -> int | None:
    """Take from `path` what group and others may do (the owner's bits stay); its former
    mode when there was something to take, else None."""
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return None
    if not current & ~private:
        return None
    try:
        path.chmod(current & private)
    except PermissionError:
        # Someone else's file (a shared directory the operator chose): say so, go on.
        log.warning("%s is open to other users (mode %o) and not ours to change", path, current)
        return None
    return current
