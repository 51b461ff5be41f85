"""Files that hold personal data (the SQLite database, the Maildir, the signing key, CSV
exports): created readable by this user only, whatever the umask, and closed again at
start-up when an older version left them open to other users."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from mailer.config import Settings

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


def data_paths(settings: Settings) -> tuple[list[Path], list[Path]]:
    """The directories and files the app keeps personal data in, by its settings: the data
    directory, the Maildir, the SQLite database with its sidecars, the signing key."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    maildir = settings.maildir_path
    directories = [settings.data_dir, maildir, *(maildir / sub for sub in ("tmp", "new", "cur"))]
    files = [settings.data_dir / "secret.key"]
    try:
        url = make_url(settings.database_url)
    except ArgumentError:  # a malformed URL is refused where the engine is made
        return directories, files
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        db = Path(url.database)
        files += [db, *(db.with_name(db.name + suffix) for suffix in SQLITE_SIDECARS)]
    return directories, files


def close_data_to_others(settings: Settings) -> list[str]:
    """Side effect: the app's data (`data_paths`) closed to other users where an older
    version left it open, with one warning line; returns what was open."""
    return close_to_others(*data_paths(settings))


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
