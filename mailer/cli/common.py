"""What every sub-command shares: the --config option, loading settings, reaching the
database, and failing with a clear message instead of a traceback: `fail` for the
command's own words, and `Commands`, which answers any `mailer.errors` refusal a
command lets through with one line and the refusal's exit code."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from sqlalchemy import Engine, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from typer.core import TyperGroup

from mailer import config, db, logs, personal_data
from mailer.errors import MailerError

if TYPE_CHECKING:
    from mailer.services import Services

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML config file (default: $MAILER_CONFIG).", dir_okay=False
    ),
]


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=code)


class Commands(TyperGroup):
    """The command group of `mailer`: a refusal from any sub-command is one line on
    standard error and its exit code (2 for bad input or a state that forbids it, 75 when
    something needed does not answer), never a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except MailerError as exc:
            raise fail(exc.detail, exc.exit_code) from exc


def load_settings(config_path: Path | None) -> config.Settings:
    """The settings, or one line saying what is wrong with them (exit 2)."""
    try:
        settings = config.load(config_path)
        config.check_production(settings)
    except config.ConfigError as exc:
        raise fail(str(exc)) from exc
    except OSError as exc:  # the development key cannot be written under data_dir
        raise fail(f"cannot write to {exc.filename}: {exc.strerror}") from exc
    logs.configure(settings.log_level, settings.log_format)
    return settings


def open_engine(settings: config.Settings, migrate_sqlite: bool) -> Engine:
    """An engine on a database that answers (and, on SQLite, is migrated), or one line
    saying why not (exit 2)."""
    try:
        personal_data.close_data_to_others(settings)
        engine = db.make_engine(settings)
    except OSError as exc:  # the SQLite file or its directory cannot be made
        database = make_url(settings.database_url).database
        raise fail(
            f"cannot create the SQLite database {database}: {exc.strerror} ({exc.filename})"
        ) from exc
    except (ArgumentError, ImportError) as exc:  # a URL the settings' check let through
        raise fail(f"cannot use the database URL: {exc}") from exc
    problem = _connection_problem(engine)
    if problem:
        raise fail(problem)
    if migrate_sqlite and db.is_sqlite(engine):
        try:
            db.upgrade(engine)
        except OperationalError as exc:  # a read-only file or directory, a full disk
            raise fail(f"cannot write the database at {_where(engine)}: {exc.orig}") from exc
    elif migrate_sqlite and not db.is_current(engine):
        raise fail("the database schema is not up to date: run `mailer db upgrade` first")
    return engine


def _where(engine: Engine) -> str:
    """The database as an operator knows it: a file, or host:port/name (no password)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        return str(url.database)
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database}"


def _connection_problem(engine: Engine) -> str | None:
    """None when the database answers; else what is wrong, in the operator's terms."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        url = engine.url
        if url.get_backend_name() == "postgresql":
            server = f"{url.host or 'localhost'}:{url.port or 5432}"
            if "does not exist" in reason and url.database and f'"{url.database}"' in reason:
                return (
                    f'database "{url.database}" does not exist on {server}: create it '
                    "(createdb), then run `mailer db upgrade`"
                )
            if "authentication failed" in reason or "no password supplied" in reason:
                return f"the database server {server} refused the user name or password"
            return f"cannot reach the database server {server}: {reason}"
        return f"cannot open the database at {_where(engine)}: {reason}"
    return None


def build_services(settings: config.Settings) -> Services:
    """The process's collaborators; a setting found unusable while building them (a DKIM
    key that cannot be read, say) ends the command with its message."""
    from mailer import services

    try:
        return services.build(settings)
    except config.ConfigError as exc:
        raise fail(str(exc)) from exc
