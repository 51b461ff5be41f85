"""Where the app keeps readers' personal data, by its settings (data directory, Maildir,
SQLite database, signing key), and closing it to other users at start-up."""

from __future__ import annotations

from pathlib import Path

from mailer.config import Settings
from mailer.files import SQLITE_SIDECARS, close_to_others


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
