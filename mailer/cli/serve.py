"""`mailer serve` and `mailer worker`: the long-running processes (HTTP API, scheduler,
senders)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
from typing import Annotated

import typer
import uvicorn

from mailer.cli.common import ConfigOption, build_services, fail
from mailer.cli.common import load_settings as _settings
from mailer.cli.common import open_engine as _engine
from mailer.listening import CannotListen, listening_socket

log = logging.getLogger("mailer")


def _link_host(host: str) -> str:
    """The host for links to a server listening on `host`: a wildcard means this machine."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "127.0.0.1"
    if address.is_unspecified:
        return "127.0.0.1"
    return f"[{host}]" if address.version == 6 else host


def serve(
    config_path: ConfigOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Do not send mail from this process.")
    ] = False,
) -> None:
    """Run the HTTP API, the scheduler and (unless --no-worker) the sender and webhooks."""
    from mailer.app import create_app

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
