"""`mailer sends`: a send's progress, and pausing, resuming or cancelling it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mailer import db
from mailer.cli.common import ConfigOption, fail
from mailer.cli.common import load_settings as _settings
from mailer.cli.common import open_engine as _engine
from mailer.clock import SystemClock
from mailer.delivery import send_control
from mailer.delivery.send_control import Change

sends_app = typer.Typer(help="Sends and their progress.", no_args_is_help=True)


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


def _change_send(send_id: int, change: Change, config_path: Path | None) -> None:
    """Pause, resume or cancel; a running sender sees the change on its next poll."""
    from mailer.errors import NotFound

    engine = _engine(_settings(config_path), migrate_sqlite=True)
    try:
        with db.session_scope(engine) as session:
            send, _counts = send_control.change(
                session, send_id, change, SystemClock().now(), notify_sender=lambda: None
            )
    except NotFound as exc:
        raise fail(f"there is no send {send_id}") from exc
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
