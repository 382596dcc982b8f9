"""The geometry of the report's and the runs page's inline SVG charts, in plain Python.

Each function returns a frozen value of coordinates and texts; ``templates/charts.html.j2`` draws
it (autoescaped like every template, so a source name from a CSV file stays text). Charts are
sized in SVG units for a phone: 480 wide, 13-unit text, so at 390 px a label is still ~10 px;
CSS caps their width on a wide screen. Axes get "nice" ticks (1, 2, 5 × 10^n) and units; the budget
line's label lives in the HTML legend under the chart, so it can never collide with a bar.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

WIDTH = 480
MAX_BARS = 60

# Seconds per tick on a time axis: a step a person counts in.
TIME_STEPS = (
    0.1,
    0.2,
    0.25,
    0.5,
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    14400,
    21600,
    43200,
)


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    title: str  # the tooltip: what the bar is, in words
    kind: str = "bar"  # the CSS class


@dataclass(frozen=True)
class Tick:
    at: float  # x or y in SVG units
    label: str


@dataclass(frozen=True)
class TimeChart:
    """Requests per second over one stage, against the budget line."""

    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float
    bars: Sequence[Rect]
    yticks: Sequence[Tick]
    xticks: Sequence[Tick]
    xlabel: str
    ylabel: str
    budget_y: float | None  # None: no budget known, or it is off the top


@dataclass(frozen=True)
class BarRow:
    label: str  # above the bar
    value: str  # after the bar
    parts: Sequence[Rect]
    y: float  # the label's baseline
    value_x: float


@dataclass(frozen=True)
class BarChart:
    """Horizontal stacked bars, one row per item, the label above each bar."""

    width: int
    height: int
    rows: Sequence[BarRow]


@dataclass(frozen=True)
class Cell:
    x: float
    y: float
    size: float
    text: str
    shade: float  # 0..1, the fill's opacity
    kind: str  # same | overlap | conflict | empty
    title: str


@dataclass(frozen=True)
class Matrix:
    """Sources × sources: labels on the diagonal, logs labeled by both elsewhere."""

    width: int
    height: int
    header: float  # where the cells start (x and y)
    size: float
    cells: Sequence[Cell]
    numbers: Sequence[Tick]  # the row / column numbers (their centre)


def nice_step(span: float, count: int = 4) -> float:
    """A step of 1, 2 or 5 × 10^n that divides ``span`` into about ``count`` parts."""
    raw = max(span, 1e-9) / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(float(m) * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * 0.999)


def number(value: float) -> str:
    """A tick label: thousands separators, no trailing zeros."""
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def duration(seconds: float) -> str:
    """A time-axis label: 0.5 s, 45 s, 2 min, 1.5 h."""
    if seconds < 120:
        return f"{number(round(seconds, 2))} s"
    if seconds < 7200:
        return f"{number(round(seconds / 60, 1))} min"
    return f"{number(round(seconds / 3600, 1))} h"


def time_chart(
    requests: int,
    seconds: float,
    budget: float | None,
    timeline: Sequence[Sequence[int]] | None = None,
) -> TimeChart | None:
    """Requests per second over a stage: from its per-second counts, in at most MAX_BARS bars,
    or (``timeline`` None) one bar at the average over its seconds (at least one). None when it
    sent no request."""
    buckets: list[tuple[float, float, float]]  # (start, width, requests per second)
    if timeline:
        first, last = int(timeline[0][0]), int(timeline[-1][0])
        span: float = last - first + 1
        size = math.ceil(span / MAX_BARS)
        per = [0.0] * math.ceil(span / size)
        for sec, n in timeline:
            per[(int(sec) - first) // size] += n / size
        buckets = [(i * size, size, rate) for i, rate in enumerate(per)]
    elif requests:
        span = max(float(seconds), 1.0)
        size = 0
        buckets = [(0, span, requests / span)]
    else:
        return None
    left, right, top, bottom = 56.0, WIDTH - 14.0, 12.0, 166.0
    peak = max(rate for *_, rate in buckets)
    ystep = nice_step(max(peak, budget or 0.0) * 1.05)
    ytop = ystep * max(math.ceil(max(peak, budget or 0.0) * 1.05 / ystep), 1)
    xstep = next((s for s in TIME_STEPS if s * 6 >= span), TIME_STEPS[-1])
    xscale = (right - left) / span
    yscale = (bottom - top) / ytop
    bars = [
        Rect(
            x=left + start * xscale,
            y=bottom - rate * yscale,
            width=max(width * xscale - (1 if size and width * xscale > 3 else 0), 0.8),
            height=rate * yscale,
            title=(
                f"{duration(start)} to {duration(start + width)}: {number(round(rate, 2))} "
                "requests per second" + ("" if size else " on average")
            ),
        )
        for start, width, rate in buckets
        if rate
    ]
    yticks = [Tick(bottom - v * yscale, number(round(v, 6))) for v in _range(ytop, ystep)]
    xticks = [Tick(left + t * xscale, duration(t)) for t in _range(span, xstep) if t <= span + 1e-9]
    budget_y = bottom - budget * yscale if budget else None
    return TimeChart(
        WIDTH, 210, left, right, top, bottom, bars, yticks, xticks,
        xlabel="time since the stage began",
        ylabel="requests per second",
        budget_y=budget_y,
    )  # fmt: skip


def coverage_chart(sources: Mapping[str, Mapping[str, Any]], window_logs: Any) -> BarChart | None:
    """Labels per source as bars: +1, -1 and score-only parts, longest first, in units of 0..100
    of the longest (each row's bar is its own small SVG, its texts HTML, so they reflow); the
    value says how many and what share of the window's logs they cover."""
    if not sources:
        return None
    items = sorted(sources.items(), key=lambda kv: (-_int(kv[1].get("labels")), kv[0]))
    longest = max(_int(s.get("labels")) for _, s in items) or 1
    rows = []
    for name, s in items:
        labels, good, bad = _int(s.get("labels")), _int(s.get("positive")), _int(s.get("negative"))
        other = max(labels - good - bad, 0)
        x = 0.0
        parts = []
        for n, kind, what in ((good, "good", "+1 (good)"), (bad, "bad", "-1 (bad)"),
                              (other, "other", "score only")):  # fmt: skip
            if n:
                w = 100.0 * n / longest
                parts.append(Rect(x, 0, max(w, 0.5), 10, f"{name}: {n:,} {what}", kind))
                x += w
        share = s.get("coverage")
        if share is None and _int(window_logs):
            share = _int(s.get("in_window", labels)) / _int(window_logs)
        value = f"{labels:,}" + (f" · {float(share) * 100:.1f}%" if share is not None else "")
        rows.append(BarRow(str(name), value, parts, 0.0, x))
    return BarChart(100, 10, rows)


def overlap_matrix(
    sources: Sequence[str],
    labels: Mapping[str, int],
    pairs: Sequence[Mapping[str, Any]],
) -> Matrix | None:
    """Sources × sources, numbered (the legend beside it names them): the diagonal holds each
    source's labels, a cell off it the logs both sources labeled, red where they disagree."""
    if len(sources) < 2:
        return None
    index = {name: i for i, name in enumerate(sources)}
    both: dict[tuple[int, int], tuple[int, int]] = {}
    for pair in pairs:
        a, b = index.get(str(pair.get("a"))), index.get(str(pair.get("b")))
        if a is None or b is None:
            continue
        value = (_int(pair.get("overlap")), _int(pair.get("disagree")))
        both[(a, b)] = both[(b, a)] = value
    size = 46.0 if len(sources) <= 8 else max(22.0, 320.0 / len(sources))
    header = 26.0
    top = max((o for o, _ in both.values()), default=0) or 1
    cells = []
    for r, row_name in enumerate(sources):
        for c, col_name in enumerate(sources):
            x, y = header + c * size, header + r * size
            if r == c:
                n = labels.get(row_name, 0)
                cells.append(Cell(x, y, size, f"{n:,}", 0.0, "same", f"{row_name}: {n:,} labels"))
                continue
            overlap, disagree = both.get((r, c), (0, 0))
            kind = "conflict" if disagree else ("overlap" if overlap else "empty")
            title = f"{row_name} and {col_name}: {overlap:,} logs labeled by both" + (
                f", {disagree:,} with opposite feedback" if disagree else ""
            )
            text = f"{overlap:,}" if overlap else "·"
            shade = 0.15 + 0.85 * overlap / top if overlap else 0.0
            cells.append(Cell(x, y, size, text, shade, kind, title))
    numbers = [Tick(header + (i + 0.5) * size, str(i + 1)) for i in range(len(sources))]
    side = int(header + len(sources) * size + 2)
    return Matrix(side, side, header, size, cells, numbers)


@dataclass(frozen=True)
class ColumnChart:
    """One measure per run over the nights: a column per run, dated on the x axis."""

    title: str
    width: int
    height: int
    left: float
    bottom: float
    bars: Sequence[Rect]
    yticks: Sequence[Tick]
    xticks: Sequence[Tick]


def column_chart(title: str, points: Sequence[tuple[str, str, int | None, str]]) -> ColumnChart:
    """``points``: (x label, run id, value, status) oldest first; a run without the number gets
    no column (its place stays, so the nights line up between charts)."""
    width = 400  # narrower than a stage chart: two or three fit side by side, labels stay legible
    left, right, top, bottom = 48.0, width - 10.0, 10.0, 120.0
    peak = max((v for _, _, v, _ in points if v), default=0)
    step = nice_step(peak or 1) if peak >= 4 else 1.0
    ytop = step * max(math.ceil((peak or 1) / step), 1)
    slot = (right - left) / max(len(points), 1)
    yscale = (bottom - top) / ytop
    bars = [
        Rect(
            left + i * slot + slot * 0.15,
            bottom - (value or 0) * yscale,
            max(slot * 0.7, 1.0),
            max((value or 0) * yscale, 0.0),
            f"{run_id} ({label}): {value:,} {title}",
            "bar " + status,
        )
        for i, (label, run_id, value, status) in enumerate(points)
        if value is not None
    ]
    every = max(1, math.ceil(len(points) / 6))
    xticks = [
        Tick(left + (i + 0.5) * slot, label)
        for i, (label, *_rest) in enumerate(points)
        if i % every == 0
    ]
    yticks = [Tick(bottom - v * yscale, number(v)) for v in _range(ytop, step)]
    return ColumnChart(title, width, 150, left, bottom, bars, yticks, xticks)


def _range(top: float, step: float) -> list[float]:
    """0, step, 2 step ... up to top (to the nearest step)."""
    return [step * i for i in range(math.floor(top / step + 1e-9) + 1)]


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0
