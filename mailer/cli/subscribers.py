"""`mailer subscribers`: import, export, show and erase subscribers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine

from mailer import db, files
from mailer.cli.common import ConfigOption, fail
from mailer.cli.common import load_settings as _settings
from mailer.cli.common import open_engine as _engine
from mailer.clock import SystemClock

subscribers_app = typer.Typer(help="Import and export subscribers.", no_args_is_help=True)


@subscribers_app.command("import")
def subscribers_import(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="CSV with an 'email' column (and 'name').",
        ),
    ],
    list_slug: Annotated[str, typer.Option("--list", help="Slug of the list to add to.")],
    config_path: ConfigOption = None,
) -> None:
    """Import a CSV as confirmed subscribers, with an `imported` consent event per row."""
    from mailer.errors import Invalid
    from mailer.subscriptions import transfer
    from mailer.subscriptions.errors import UnknownList

    settings = _settings(config_path)
    engine = _engine(settings, migrate_sqlite=True)
    try:
        with file.open(newline="", encoding="utf-8-sig") as handle:
            total = max(sum(1 for _ in handle) - 1, 0)
        with (
            file.open(newline="", encoding="utf-8-sig") as handle,
            typer.progressbar(length=total, label="importing", file=sys.stderr) as bar,
        ):
            report = transfer.import_csv(
                engine,
                handle,
                list_slug,
                source=file.name,
                now=SystemClock().now,
                progress=bar.update,
            )
    except UnknownList as exc:
        raise fail(f"there is no list {list_slug!r}") from exc
    except Invalid as exc:
        raise fail(exc.message) from exc
    except UnicodeDecodeError as exc:
        raise fail("the file is not UTF-8 text") from exc
    for line, reason in report.skipped:
        typer.echo(f"line {line}: skipped: {reason}", err=True)
    typer.echo(
        f"imported {report.imported}, already confirmed {report.already_confirmed}, "
        f"skipped {len(report.skipped)}"
    )


@subscribers_app.command("export")
def subscribers_export(
    list_slug: Annotated[str | None, typer.Option("--list", help="Only this list.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    config_path: ConfigOption = None,
) -> None:
    """Write every subscription as CSV."""
    from mailer.subscriptions import transfer

    settings = _settings(config_path)
    engine = _engine(settings, migrate_sqlite=True)
    # A file of readers' addresses: readable by this user only, like the database.
    try:
        handle = files.open_private(output) if output else sys.stdout
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc.strerror or exc}") from exc
    try:
        handle.write(transfer.csv_line(transfer.EXPORT_COLUMNS))
        for row in transfer.export_rows(engine, list_slug):
            handle.write(transfer.csv_line(row))
    finally:
        if output:
            handle.close()


def _subscriber_by_address(engine: Engine, email: str) -> int:
    """The id of the subscriber with this address, or a clear error (exit 2)."""
    from mailer.errors import Invalid
    from mailer.subscriptions import directory
    from mailer.subscriptions.addresses import normalize_email

    try:
        address = normalize_email(email)
    except Invalid as exc:
        raise fail(f"not a valid address: {exc.message}") from exc
    with db.session_scope(engine) as session:
        found = directory.search(session, email=address, limit=1)
        if not found or found[0].id is None:
            raise fail("no subscriber has that address")
        return found[0].id


@subscribers_app.command("show")
def subscribers_show(
    email: Annotated[str, typer.Argument(help="The subscriber's address.")],
    config_path: ConfigOption = None,
) -> None:
    """Print everything held about one subscriber as JSON (as GET
    /api/v1/subscribers/{id}/export answers)."""
    from mailer.models import Subscriber
    from mailer.subscriptions.export import held_data

    engine = _engine(_settings(config_path), migrate_sqlite=True)
    subscriber_id = _subscriber_by_address(engine, email)
    with db.session_scope(engine) as session:
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        typer.echo(held_data(session, subscriber).model_dump_json(indent=2))


@subscribers_app.command("erase")
def subscribers_erase(
    email: Annotated[str, typer.Argument(help="The subscriber's address.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    config_path: ConfigOption = None,
) -> None:
    """Erase a subscriber: address and personal fields replaced by digests, the consent
    ledger kept (and still verifiable), the suppression kept."""
    from mailer.subscriptions import erasure

    engine = _engine(_settings(config_path), migrate_sqlite=True)
    subscriber_id = _subscriber_by_address(engine, email)
    if not yes:
        try:
            agreed = typer.confirm(
                f"Erase subscriber {subscriber_id}? This cannot be undone.", err=True
            )
        except typer.Abort:
            agreed = False
        if not agreed:
            raise fail("not erased (confirm, or pass --yes)")
    with db.session_scope(engine) as session:
        erasure.erase(session, subscriber_id, SystemClock().now(), reason="erased by an operator")
    typer.echo(f"subscriber {subscriber_id} erased")
