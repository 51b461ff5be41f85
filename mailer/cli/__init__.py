"""The `mailer` command: the typer `app` (the console script) and its sub-commands, one
module per group: serve (serve, worker), db, apikeys, users, subscribers, digests, sends,
dkim, bounces, webhooks; common holds what they share."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from mailer.cli.apikeys import apikey_app
from mailer.cli.bounces import bounces_app
from mailer.cli.common import Commands
from mailer.cli.db import db_app
from mailer.cli.digests import digest_app
from mailer.cli.dkim import dkim_app
from mailer.cli.sends import sends_app
from mailer.cli.serve import serve, worker
from mailer.cli.subscribers import subscribers_app
from mailer.cli.users import user_app
from mailer.cli.webhooks import webhooks_app

app = typer.Typer(
    cls=Commands,
    help="mailer: newsletters with double opt-in.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command()(serve)
app.command()(worker)
app.add_typer(db_app, name="db")
app.add_typer(digest_app, name="digest")
app.add_typer(sends_app, name="sends")
app.add_typer(apikey_app, name="apikey")
app.add_typer(user_app, name="user")
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(dkim_app, name="dkim")
app.add_typer(bounces_app, name="bounces")
app.add_typer(webhooks_app, name="webhooks")


@app.callback()
def main(
    config_path: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="TOML config file for every sub-command.", dir_okay=False
        ),
    ] = None,
) -> None:
    """mailer: newsletters with double opt-in."""
    if config_path is not None:
        os.environ["MAILER_CONFIG"] = str(config_path)
