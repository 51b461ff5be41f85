"""`mailer digest`: list digests and start a send now."""

from __future__ import annotations

from typing import Annotated

import typer

from mailer import db
from mailer.cli.common import ConfigOption, build_services, fail
from mailer.cli.common import load_settings as _settings
from mailer.cli.common import open_engine as _engine

digest_app = typer.Typer(help="Digests.", no_args_is_help=True)


@digest_app.command("list")
def digest_list(config_path: ConfigOption = None) -> None:
    """Show the digests with their schedule and next run."""
    from mailer.content import digests

    engine = _engine(_settings(config_path), migrate_sqlite=True)
    with db.session_scope(engine) as session:
        for digest in digests.all_digests(session):
            when = digest.schedule or f"once at {digest.send_at}"
            typer.echo(
                f"{digest.id}\t{digest.name}\t{when} ({digest.timezone})\t"
                f"next: {digest.next_run_at or '-'}"
            )


@digest_app.command("send")
def digest_send(
    name: Annotated[str, typer.Argument(help="The digest's name.")],
    config_path: ConfigOption = None,
) -> None:
    """Start a send of the digest now; prints the send's id on the last line."""
    from mailer.content import digests
    from mailer.delivery import digest_actions
    from mailer.errors import NotFound

    settings = _settings(config_path)
    _engine(settings, migrate_sqlite=True).dispose()
    services = build_services(settings)
    try:
        with db.session_scope(services.engine) as session:
            digest_id = digests.by_name(session, name).id or 0
            send, _counts = digest_actions.send_now(session, services, digest_id)
    except NotFound as exc:
        raise fail(f"there is no digest named {name!r}") from exc
    if send.status == "skipped":
        typer.echo(f"skipped: {send.reason}", err=True)
    else:
        typer.echo(
            f"queued for {send.total} recipients; a running sender delivers it "
            f"(`mailer sends show {send.id}`)",
            err=True,
        )
    typer.echo(send.id)
