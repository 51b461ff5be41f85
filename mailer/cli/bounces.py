"""`mailer bounces`: bounces and complaints: the inbound listener and mailbox poller."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from typing import Annotated

import typer

from mailer import config
from mailer.bounces.intake import Intake
from mailer.cli.common import ConfigOption, fail, load_settings, open_engine

bounces_app = typer.Typer(
    help="Bounces and complaints: the inbound listener and mailbox poller.", no_args_is_help=True
)

log = logging.getLogger("mailer")


def _intake(settings: config.Settings) -> Intake:
    """The intake on the configured database, reading tags with the server's key."""
    from mailer.clock import SystemClock
    from mailer.tokens import Signer

    engine = open_engine(settings, migrate_sqlite=True)
    return Intake.for_settings(
        settings, engine, Signer(config.signing_key(settings)), SystemClock()
    )


@bounces_app.command("serve")
def serve(
    config_path: ConfigOption = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: [bounces] listen_host).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default: [bounces] listen_port).")
    ] = None,
) -> None:
    """Accept DSNs and ARF reports by SMTP for the bounce domain until stopped."""
    from mailer.bounces.listener import BounceListener
    from mailer.bounces.verp import bounce_domain

    settings = load_settings(config_path)
    intake = _intake(settings)
    listener = BounceListener(
        intake,
        bounce_domain(settings),
        host or settings.bounces.listen_host,
        port if port is not None else settings.bounces.listen_port,
        settings.bounces.max_message_bytes,
    )
    try:
        listener.start()
    except OSError as exc:
        raise fail(f"cannot listen on {listener.host}:{listener.port}: {exc.strerror}") from exc
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    listener.stop()
    log.info("bounce listener stopped; messages: %s", dict(intake.counts) or "none")


@bounces_app.command("poll")
def poll(
    config_path: ConfigOption = None,
    once: Annotated[
        bool, typer.Option("--once", help="Poll once, print the counts, exit.")
    ] = False,
) -> None:
    """Read DSNs and ARF reports from the IMAP mailbox ([bounces] imap_*), every
    imap_interval_seconds until stopped, or once."""
    from mailer.bounces.mailbox import MailboxError, MailboxPoller

    settings = load_settings(config_path)
    if not settings.bounces.imap_host:
        raise fail("no bounce mailbox is set: set [bounces] imap_host (MAILER_BOUNCES__IMAP_HOST)")
    intake = _intake(settings)
    poller = MailboxPoller(intake, settings.bounces)
    if once:
        try:
            counts = poller.poll_once()
        except MailboxError as exc:
            raise fail(str(exc)) from exc
        summary = ", ".join(f"{label} {count}" for label, count in sorted(counts.items()))
        typer.echo(f"messages read: {sum(counts.values())}" + (f" ({summary})" if summary else ""))
        return

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await poller.run_forever(stop)

    asyncio.run(run())
