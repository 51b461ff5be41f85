"""`mailer db`: the database schema."""

from __future__ import annotations

from typing import Annotated

import typer

from mailer import db
from mailer.cli.common import ConfigOption
from mailer.cli.common import load_settings as _settings
from mailer.cli.common import open_engine as _engine

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(
    config_path: ConfigOption = None, revision: Annotated[str, typer.Argument()] = "head"
) -> None:
    """Apply the schema migrations."""
    settings = _settings(config_path)
    engine = _engine(settings, migrate_sqlite=False)
    db.upgrade(engine, revision)
    typer.echo(f"database at {engine.url.render_as_string()} is at revision {revision}")
