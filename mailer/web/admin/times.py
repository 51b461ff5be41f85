"""Times on the editors' pages: stored moments as UTC (SQLite hands back naive ones),
in a digest's own time zone, and in <time> elements."""

from __future__ import annotations

from datetime import UTC, datetime

from markupsafe import Markup

from mailer.content.schedules import BadSchedule, zone


def as_utc(at: datetime) -> datetime:
    """The same moment in UTC (SQLite hands back naive datetimes, which are UTC)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def time_tag(at: datetime | None, seconds: bool = False) -> Markup:
    """`<time datetime="2026-11-26T07:00:00Z">2026-11-26 07:00 UTC</time>`, or a dash."""
    if at is None:
        return Markup("—")
    moment = as_utc(at)
    shown = moment.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")
    machine = moment.isoformat().replace("+00:00", "Z")
    return Markup('<time datetime="{}">{}</time>').format(machine, shown)


def in_zone(moment: datetime, timezone: str) -> tuple[datetime, str]:
    """The moment in `timezone`, and that zone's name (UTC when the name is not known)."""
    try:
        return as_utc(moment).astimezone(zone(timezone)), timezone
    except BadSchedule:
        return as_utc(moment), "UTC"
