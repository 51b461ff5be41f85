"""`mailer webhooks`: outgoing webhooks: endpoints and their deliveries."""

from __future__ import annotations

import typer

webhooks_app = typer.Typer(
    help="Outgoing webhooks: endpoints and their deliveries.", no_args_is_help=True
)
