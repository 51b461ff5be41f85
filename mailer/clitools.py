"""What every sub-command shares: the --config option, loading settings, reaching the
database, and failing with a clear message instead of a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from sqlalchemy import Engine

from mailer import config, db, files, logs

if TYPE_CHECKING:
    from mailer.services import Services

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML config file (default: $MAILER_CONFIG).", dir_okay=False
    ),
]


def fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


def load_settings(config_path: Path | None) -> config.Settings:
    try:
        settings = config.load(config_path)
        config.check_production(settings)
    except config.ConfigError as exc:
        raise fail(str(exc)) from exc
    logs.configure(settings.log_level, settings.log_format)
    return settings


def open_engine(settings: config.Settings, migrate_sqlite: bool) -> Engine:
    files.close_data_to_others(settings)
    engine = db.make_engine(settings)
    if not db.ping(engine):
        raise fail(f"cannot reach the database at {engine.url.render_as_string()}")
    if migrate_sqlite and db.is_sqlite(engine):
        db.upgrade(engine)
    elif migrate_sqlite and not db.is_current(engine):
        raise fail("the database schema is not up to date: run `mailer db upgrade` first")
    return engine


def build_services(settings: config.Settings) -> Services:
    """The process's collaborators; a setting found unusable while building them (a DKIM
    key that cannot be read, say) ends the command with its message."""
    from mailer import services

    try:
        return services.build(settings)
    except config.ConfigError as exc:
        raise fail(str(exc)) from exc
