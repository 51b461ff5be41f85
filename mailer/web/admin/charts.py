"""Geometry of the dashboard's server-rendered SVG charts: a line chart of counts per day
and a grouped bar chart. Pure functions from numbers to coordinates; the templates draw
them with presentation attributes only (the Content-Security-Policy forbids style="")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

# Distinguishable for most forms of colour blindness (Okabe-Ito), dark enough on white.
PALETTE = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000"]


@dataclass(frozen=True)
class Box:
    """The plotting area inside the chart, in SVG user units."""

    left: float
    top: float
    right: float
    bottom: float


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Line:
    label: str
    colour: str
    path: str
    """SVG path data through one point per day."""
    last: int


@dataclass(frozen=True)
class LegendEntry:
    label: str
    colour: str
    x: float
    y: float


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    box: Box
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    legend: list[LegendEntry]
    lines: list[Line]
    bars: list[Bar]


def nice_ceiling(value: int, ticks: int = 4) -> tuple[int, int]:
    """An axis maximum at or above `value` and its step (1, 2 or 5 times a power of ten),
    so that about `ticks` gridlines have round labels. An empty axis reaches 1 in steps of 1."""
    if value <= ticks:
        return max(value, 1), 1
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if step * ticks >= value:
                return -(-value // step) * step, step
        magnitude *= 10


def _frame(
    days: list[date], top_value: int, width: int, height: int, legend_rows: int
) -> tuple[Box, list[Tick], list[Tick], int]:
    maximum, step = nice_ceiling(top_value)
    box = Box(left=48, top=12, right=width - 28, bottom=height - 36 - 20 * legend_rows)
    y_ticks = [Tick(_y(box, value, maximum), str(value)) for value in range(0, maximum + 1, step)]
    every = max(1, len(days) // 6)
    x_ticks = [
        Tick(_x(box, index, len(days)), f"{day:%d %b}")
        for index, day in enumerate(days)
        if (len(days) - 1 - index) % every == 0
    ]
    return box, x_ticks, y_ticks, maximum


def _x(box: Box, index: int, count: int) -> float:
    if count <= 1:
        return round((box.left + box.right) / 2, 1)
    return round(box.left + (box.right - box.left) * index / (count - 1), 1)


def _y(box: Box, value: int, maximum: int) -> float:
    return round(box.bottom - (box.bottom - box.top) * value / maximum, 1)


def _legend(labels: list[str], box: Box, width: int) -> list[LegendEntry]:
    entries = []
    x, y = box.left, box.bottom + 44
    for index, label in enumerate(labels):
        room = 28 + 7 * len(label)
        if x + room > width and x > box.left:
            x, y = box.left, y + 20
        entries.append(LegendEntry(label, PALETTE[index % len(PALETTE)], x, y))
        x += room + 16
    return entries


def _legend_rows(labels: list[str], width: int) -> int:
    rows, x = 1, 48.0
    for label in labels:
        room = 28 + 7 * len(label)
        if x + room > width and x > 48:
            rows, x = rows + 1, 48.0
        x += room + 16
    return rows


def line_chart(
    days: list[date], series: list[tuple[str, list[int]]], width: int = 720, height: int = 300
) -> Chart:
    """One line per (label, counts per day); the x axis is `days`, the y axis starts at 0."""
    labels = [label for label, _ in series]
    top_value = max((max(counts, default=0) for _, counts in series), default=0)
    rows = _legend_rows(labels, width)
    box, x_ticks, y_ticks, maximum = _frame(days, top_value, width, height, rows)
    lines = []
    for index, (label, counts) in enumerate(series):
        points = [
            f"{_x(box, day, len(counts)):g} {_y(box, value, maximum):g}"
            for day, value in enumerate(counts)
        ]
        lines.append(
            Line(
                label=label,
                colour=PALETTE[index % len(PALETTE)],
                path="M " + " L ".join(points) if points else "",
                last=counts[-1] if counts else 0,
            )
        )
    return Chart(width, height, box, x_ticks, y_ticks, _legend(labels, box, width), lines, [])


def bar_chart(
    days: list[date], groups: list[tuple[str, list[int]]], width: int = 720, height: int = 240
) -> Chart:
    """Side-by-side bars per day, one per (label, counts per day)."""
    labels = [label for label, _ in groups]
    top_value = max((max(counts, default=0) for _, counts in groups), default=0)
    box, _, y_ticks, maximum = _frame(days, top_value, width, height, 1)
    slot = (box.right - box.left) / max(len(days), 1)
    bar_width = round(slot * 0.8 / max(len(groups), 1), 1)
    every = max(1, len(days) // 6)
    x_ticks = [
        Tick(round(box.left + slot * (index + 0.5), 1), f"{day:%d %b}")
        for index, day in enumerate(days)
        if (len(days) - 1 - index) % every == 0
    ]
    bars = []
    for group_index, (label, counts) in enumerate(groups):
        colour = PALETTE[group_index % len(PALETTE)]
        for index, value in enumerate(counts):
            if not value:
                continue
            top = _y(box, value, maximum)
            bars.append(
                Bar(
                    x=round(box.left + slot * index + slot * 0.1 + bar_width * group_index, 1),
                    y=top,
                    width=bar_width,
                    height=round(box.bottom - top, 1),
                    colour=colour,
                    title=f"{days[index]:%d %b}: {value} {label.lower()}",
                )
            )
    return Chart(width, height, box, x_ticks, y_ticks, _legend(labels, box, width), [], bars)
