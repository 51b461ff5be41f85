"""`mailer apikey`: editors' API keys."""

from __future__ import annotations

from typing import Annotated

import typer

from mailer import db
from mailer.cli.common import ConfigOption
from mailer.cli.common import load_settings as _settings
from mailer.cli.common import open_engine as _engine
from mailer.clock import SystemClock

apikey_app = typer.Typer(help="Editors' API keys.", no_args_is_help=True)


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Argument(help="Who or what the key is for.")],
    config_path: ConfigOption = None,
) -> None:
    """Create an editors' API key and print it (last line; it is not shown again)."""
    from mailer import apikeys

    settings = _settings(config_path)
    engine = _engine(settings, migrate_sqlite=True)
    with db.session_scope(engine) as session:
        key = apikeys.create(session, name, SystemClock().now())
    typer.echo(f"API key for {name!r} (store it now, it is not shown again):", err=True)
    typer.echo(key)
