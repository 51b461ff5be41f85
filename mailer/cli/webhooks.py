"""`mailer webhooks`: outgoing webhooks: endpoints and their deliveries."""

from __future__ import annotations

from typing import Annotated

import typer

from mailer.cli.common import ConfigOption, fail, load_settings, open_engine

webhooks_app = typer.Typer(
    help="Outgoing webhooks: endpoints and their deliveries.", no_args_is_help=True
)


@webhooks_app.command("list")
def list_endpoints(config_path: ConfigOption = None) -> None:
    """Show each endpoint: id, state, events, URL, and its pending / failed deliveries."""
    from mailer.db import session_scope
    from mailer.webhooks import endpoints, queue

    engine = open_engine(load_settings(config_path), migrate_sqlite=True)
    with session_scope(engine) as session:
        counts = queue.counts_by_endpoint(session)
        found = endpoints.all_endpoints(session)
        if not found:
            typer.echo("no webhook endpoints (add one with POST /api/v1/webhooks)")
        for endpoint in found:
            count = counts.get(endpoint.id or 0, {})
            typer.echo(
                f"{endpoint.id}\t{'enabled' if endpoint.enabled else 'disabled'}\t"
                f"{endpoint.url}\t{','.join(endpoint.events)}\t"
                f"pending: {count.get(queue.PENDING, 0)}\tfailed: {count.get(queue.FAILED, 0)}"
            )


@webhooks_app.command("retry")
def retry_failed(
    endpoint_id: Annotated[int, typer.Argument(help="The endpoint's id (see `list`).")],
    config_path: ConfigOption = None,
) -> None:
    """Send the endpoint's failed deliveries again, now."""
    from sqlmodel import col, select

    from mailer.clock import SystemClock
    from mailer.db import session_scope
    from mailer.models import WebhookDelivery, WebhookEndpoint
    from mailer.webhooks import queue

    engine = open_engine(load_settings(config_path), migrate_sqlite=True)
    now = SystemClock().now()
    with session_scope(engine) as session:
        if session.get(WebhookEndpoint, endpoint_id) is None:
            raise fail(f"no webhook endpoint {endpoint_id}")
        failed = session.exec(
            select(WebhookDelivery).where(
                col(WebhookDelivery.endpoint_id) == endpoint_id,
                col(WebhookDelivery.status) == queue.FAILED,
            )
        ).all()
        for delivery in failed:
            queue.retry(session, delivery, now)
    typer.echo(f"{len(failed)} failed deliveries queued again")
