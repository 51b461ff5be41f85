"""`mailer dkim`: dKIM keys for signing mail."""

from __future__ import annotations

import typer

dkim_app = typer.Typer(help="DKIM keys for signing mail.", no_args_is_help=True)
