"""`mailer bounces`: bounces and complaints: the inbound listener and mailbox poller."""

from __future__ import annotations

import typer

bounces_app = typer.Typer(
    help="Bounces and complaints: the inbound listener and mailbox poller.", no_args_is_help=True
)
