"""`mailer user`: accounts for the editors' web interface."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mailer import db
from mailer.cli.common import ConfigOption
from mailer.cli.common import load_settings as _settings
from mailer.cli.common import open_engine as _engine
from mailer.clock import SystemClock
from mailer.models import UserRole

user_app = typer.Typer(help="Accounts for the editors' web interface.", no_args_is_help=True)


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Argument(help="The editor's email address (their login).")],
    role: Annotated[
        UserRole, typer.Option("--role", help="admin (also manages users) or editor.")
    ] = UserRole.editor,
    generate: Annotated[
        bool,
        typer.Option(
            "--generate-password/--prompt-password",
            help="Make a strong password and print it (default when not on a terminal).",
        ),
    ] = False,
    config_path: ConfigOption = None,
) -> None:
    """Create an account for /admin/; the password is prompted for or generated."""
    from mailer import accounts

    settings = _settings(config_path)
    engine = _engine(settings, migrate_sqlite=True)
    generated = generate or not sys.stdin.isatty()
    if generated:
        password = accounts.generate_password()
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with db.session_scope(engine) as session:
        user = accounts.create_user(session, email, role, password, SystemClock().now())
    typer.echo(f"created {user.role} {user.email}", err=True)
    if generated:
        typer.echo("password (store it now, it is not shown again):", err=True)
        typer.echo(password)
