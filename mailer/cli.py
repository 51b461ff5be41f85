"""The `mailer` command: serve, worker, db, apikey, subscribers."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from sqlalchemy import Engine

from mailer import db, files
from mailer.cli_bounces import bounces_app
from mailer.cli_dkim import dkim_app
from mailer.cli_webhooks import webhooks_app
from mailer.clitools import ConfigOption, build_services, fail
from mailer.clitools import load_settings as _settings
from mailer.clitools import open_engine as _engine
from mailer.clock import SystemClock
from mailer.listening import CannotListen, listening_socket
from mailer.models import UserRole

app = typer.Typer(
    help="mailer: newsletters with double opt-in.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
apikey_app = typer.Typer(help="Editors' API keys.", no_args_is_help=True)
user_app = typer.Typer(help="Accounts for the editors' web interface.", no_args_is_help=True)
subscribers_app = typer.Typer(help="Import and export subscribers.", no_args_is_help=True)
digest_app = typer.Typer(help="Digests.", no_args_is_help=True)
sends_app = typer.Typer(help="Sends and their progress.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(digest_app, name="digest")
app.add_typer(sends_app, name="sends")
app.add_typer(apikey_app, name="apikey")
app.add_typer(user_app, name="user")
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(dkim_app, name="dkim")
app.add_typer(bounces_app, name="bounces")
app.add_typer(webhooks_app, name="webhooks")

log = logging.getLogger("mailer")


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


def _link_host(host: str) -> str:
    """The host for links to a server listening on `host`: a wildcard means this machine."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "127.0.0.1"
    if address.is_unspecified:
        return "127.0.0.1"
    return f"[{host}]" if address.version == 6 else host


@app.command()
def serve(
    config_path: ConfigOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not send mail from this process.")
    ] = False,
) -> None:
    """Run the HTTP API, the scheduler and (unless --no-worker) the sender and webhooks."""
    from mailer.api.app import create_app

    try:
        sock = listening_socket(host, port)  # first: a port in use must stop everything
    except CannotListen as exc:
        raise fail(str(exc)) from exc
    settings = _settings(config_path)
    if "public_url" not in settings.model_fields_set:
        # Links in mail must reach this server even when it listens on another port.
        link = f"http://{_link_host(host)}:{port}"
        settings = settings.model_copy(update={"public_url": link})
    _engine(settings, migrate_sqlite=True).dispose()
    services = build_services(settings)
    log.info("database: %s", services.engine.url.render_as_string())
    log.info("public URL (links in mail): %s", settings.public_url)
    if no_worker:
        log.info("mail: not sent by this process (--no-worker); run `mailer worker`")
    elif settings.smtp.transport == "maildir":
        log.warning(
            "mail: no SMTP server configured; writing messages as .eml files to %s "
            "(set MAILER_SMTP__TRANSPORT=smtp and MAILER_SMTP__HOST to send)",
            (settings.maildir_path / "new").resolve(),
        )
    else:
        log.info("mail: %s", services.transport.describe())
    web = create_app(services, run_sender=not no_worker)
    # No access log: confirm and unsubscribe paths carry tokens.
    server = uvicorn.Server(
        uvicorn.Config(
            web,
            host=host,
            port=port,
            log_level=settings.log_level.lower(),
            proxy_headers=False,
            access_log=False,
        )
    )
    server.run(sockets=[sock])
    if not server.started:
        raise typer.Exit(code=3)  # the app did not start: uvicorn has said why


@app.command()
def worker(config_path: ConfigOption = None) -> None:
    """Run only the senders: deliver the outbox and the webhooks (and poll the bounce
    mailbox when one is set) until stopped."""

    settings = _settings(config_path)
    _engine(settings, migrate_sqlite=True).dispose()
    services = build_services(settings)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await asyncio.gather(*services.delivery_loops(stop))

    asyncio.run(run())


@db_app.command("upgrade")
def db_upgrade(
    config_path: ConfigOption = None, revision: Annotated[str, typer.Argument()] = "head"
) -> None:
    """Apply the schema migrations."""
    settings = _settings(config_path)
    engine = _engine(settings, migrate_sqlite=False)
    db.upgrade(engine, revision)
    typer.echo(f"database at {engine.url.render_as_string()} is at revision {revision}")


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
    from mailer.errors import Conflict, Invalid

    settings = _settings(config_path)
    engine = _engine(settings, migrate_sqlite=True)
    generated = generate or not sys.stdin.isatty()
    if generated:
        password = accounts.generate_password()
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        with db.session_scope(engine) as session:
            user = accounts.create_user(session, email, role, password, SystemClock().now())
    except (Conflict, Invalid, accounts.WeakPassword) as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"created {user.role} {user.email}", err=True)
    if generated:
        typer.echo("password (store it now, it is not shown again):", err=True)
        typer.echo(password)


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
    from mailer.delivery import sends
    from mailer.errors import NotFound

    settings = _settings(config_path)
    _engine(settings, migrate_sqlite=True).dispose()
    services = build_services(settings)
    now = services.clock.now()
    try:
        with db.session_scope(services.engine) as session:
            digest = digests.by_name(session, name)
            send = sends.start_send(
                session, settings, services.renderer, digest, scheduled_for=now, now=now
            )
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


@sends_app.command("show")
def sends_show(
    send_id: Annotated[int, typer.Argument(help="The send's id.")],
    wait: Annotated[
        bool | None,
        typer.Option("--wait/--no-wait", help="Follow until it ends (default on a terminal)."),
    ] = None,
    config_path: ConfigOption = None,
) -> None:
    """A send's status and counts; on a terminal, a progress bar with rate and ETA."""
    import time

    from mailer.delivery import sends
    from mailer.errors import NotFound

    engine = _engine(_settings(config_path), migrate_sqlite=True)
    finished = {"done", "cancelled", "skipped"}

    def read() -> tuple[sends.Progress, float | None]:
        """The counts, and the average rate in messages per second since the send started."""
        with db.session_scope(engine) as session:
            send, counts = sends.progress(session, send_id)
        return counts, sends.rate(send, counts, SystemClock().now())

    def rate_text(rate: float | None) -> str:
        return f"{rate:.0f} msg/s" if rate is not None else ""

    try:
        counts, rate = read()
    except NotFound as exc:
        raise fail(f"there is no send {send_id}") from exc
    if wait is None:
        wait = sys.stdout.isatty()
    if wait and counts.status not in finished:
        with typer.progressbar(
            length=max(counts.total, 1),
            label=f"send {send_id}",
            show_eta=True,
            show_percent=True,
        ) as bar:
            handled = 0
            while True:
                counts, rate = read()
                now_handled = counts.total - counts.pending
                bar.label = f"send {send_id} {rate_text(rate)}"
                bar.update(now_handled - handled)
                handled = now_handled
                if counts.status in finished or counts.status == "paused":
                    break
                time.sleep(1)
    typer.echo(
        f"status {counts.status}: total {counts.total}, sent {counts.sent}, "
        f"failed {counts.failed}, pending {counts.pending}, dropped {counts.dropped}"
        + (f"; {rate_text(rate)}" if rate is not None else "")
    )


def _change_send(send_id: int, change: str, config_path: Path | None) -> None:
    from mailer.delivery import sends
    from mailer.errors import NotFound

    engine = _engine(_settings(config_path), migrate_sqlite=True)
    try:
        with db.session_scope(engine) as session:
            if change == "pause":
                send = sends.pause(session, send_id)
            elif change == "resume":
                send = sends.resume(session, send_id)
            else:
                send = sends.cancel(session, send_id, SystemClock().now())
    except NotFound as exc:
        raise fail(f"there is no send {send_id}") from exc
    except sends.WrongState as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"send {send_id} is {send.status}")


@sends_app.command("pause")
def sends_pause(
    send_id: Annotated[int, typer.Argument()], config_path: ConfigOption = None
) -> None:
    """Hold a send; messages in flight finish, no new ones start."""
    _change_send(send_id, "pause", config_path)


@sends_app.command("resume")
def sends_resume(
    send_id: Annotated[int, typer.Argument()], config_path: ConfigOption = None
) -> None:
    """Let a paused send go on."""
    _change_send(send_id, "resume", config_path)


@sends_app.command("cancel")
def sends_cancel(
    send_id: Annotated[int, typer.Argument()], config_path: ConfigOption = None
) -> None:
    """End a send; messages not yet sent are dropped."""
    _change_send(send_id, "cancel", config_path)


if __name__ == "__main__":
    app()
