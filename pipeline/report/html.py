"""report.html: one self-contained page (inline CSS and SVG, no scripts, no network) for a person.

The page is the jinja2 template ``templates/report.html.j2``, with autoescape on. Every value put
into it passes `_finalize`: formatted as the Markdown formats it (`view.fmt`), then HTML-escaped,
quotes included — unless it is already markup, i.e. a macro's output. So a string from a log, a CSV
file or the API can only ever arrive as text. This module prepares plain values: the label
analysis (JSON of any shape) as a tree of `Table` and `Pairs` for the ``tables.html.j2`` macros, and
the geometry of the requests-over-time chart for the ``charts.html.j2`` macro.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import jinja2
from markupsafe import Markup

from pipeline.report.extras import Extras
from pipeline.report.view import (
    FAILURE_HEADER,
    FEEDBACK_HEADER,
    MAX_ROWS,
    MODEL_HEADER,
    REJECT_HEADER,
    failure_count,
    failure_rows,
    feedback_rows,
    fmt,
    headline,
    model_rows,
    more_rows,
    pct,
    reject_rows,
    rejected_count,
    stage_numbers,
    status_word,
    sums,
)


@dataclass(frozen=True)
class Table:
    """A table with a header row; a cell is a plain value or another node."""

    header: Sequence[Any]
    rows: Sequence[Sequence[Any]]


@dataclass(frozen=True)
class Pairs:
    """A key / value table (class ``kv``); a value is a plain value or another node."""

    rows: Sequence[tuple[Any, Any]]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    start: int  # seconds into the load
    end: int
    rate: float  # requests per second in the bucket


@dataclass(frozen=True)
class Chart:
    """PATCH calls per second over the load, in buckets, against the budget line (SVG units)."""

    width: int
    height: int
    pad: int
    bars: Sequence[Bar]
    ticks: Sequence[tuple[float, float]]  # (y, requests/s) on the left axis
    budget: float | None
    budget_y: float | None
    span: int  # seconds from the first request to the last
    bucket: int  # seconds per bar


def _finalize(value: Any) -> Markup:
    if isinstance(value, Markup):
        return value
    # The escaping itself (stdlib, quotes as &quot;), so this Markup is safe by construction.
    return Markup(html.escape(fmt(value), quote=True))  # noqa: S704


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pipeline.report", "templates"),
        autoescape=True,
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.tests["table"] = lambda node: isinstance(node, Table)
    env.tests["pairs"] = lambda node: isinstance(node, Pairs)
    return env


ENV = _environment()


def render_html(data: Mapping[str, Any], extras: Extras) -> str:
    cause, sentence, others = headline(data)
    req = data["requests"]
    tiles = [
        ("logs extracted", data["extract"]["logs"]),
        ("labels", data["labels"]["total"]),
        ("to patch", data["plan"]["patch"]),
        ("patched", data["load"]["patched"]),
        ("failed", data["load"]["failed"]),
        ("verified", data["verify"]["verified"]),
        ("requests", req["total"]),
        ("budget used", pct(req["utilisation"])),
    ]
    by_source = data["labels"]["by_source"]
    return ENV.get_template("report.html.j2").render(
        data=data,
        status_word=status_word(data),
        cause=cause,
        sentence=sentence,
        others=others,
        tiles=tiles,
        sums=sums(data),
        stages=stage_numbers(data, csv_each=True),
        by_source=value_node(by_source) if by_source else None,
        models=Table(MODEL_HEADER, model_rows(extras)) if extras.by_model else None,
        feedback=Table(FEEDBACK_HEADER, feedback_rows(extras)) if extras.feedback else None,
        feedback_note=extras.feedback_note,
        analysis=_analysis(extras.analysis) if extras.analysis is not None else None,
        chart=timeline_chart(extras.timeline, req["budget_per_s"]),
        failures=Table(FAILURE_HEADER, failure_rows(extras)) if extras.failures else None,
        failures_more=more_rows(extras.failures),
        failure_count=failure_count(data, extras),
        rejects=Table((*REJECT_HEADER, "row"), reject_rows(extras, with_row=True))
        if extras.rejects
        else None,
        rejected_count=rejected_count(data, extras),
    )


def render_value(value: Any) -> Markup:
    """Any JSON value as HTML (the label analysis has no fixed shape): maps become tables."""
    return _macro("tables.html.j2", "value", value_node(value))


def timeline_svg(timeline: Sequence[Sequence[int]], budget: float | None) -> Markup:
    """The requests-over-time chart as inline SVG (a paragraph when nothing was sent)."""
    return _macro("charts.html.j2", "timeline", timeline_chart(timeline, budget))


def _macro(template: str, name: str, *args: Any) -> Markup:
    """Call a macro of a template from Python; with autoescape on, it returns Markup."""
    return cast(Markup, getattr(ENV.get_template(template).module, name)(*args))


def value_node(value: Any, depth: int = 0) -> Any:
    """A JSON value as what shows it: a map of flat maps as one `Table` (a row per key), a list of
    maps as a `Table` (a row per item, at most MAX_ROWS), any other map as `Pairs`, a list of
    plain values as one line of text, anything else as itself."""
    if isinstance(value, Mapping):
        if value and all(isinstance(v, Mapping) for v in value.values()) and depth < 3:
            cols = _columns(value.values())
            if all(not isinstance(v.get(c), Mapping | list) for v in value.values() for c in cols):
                return Table(
                    ["", *cols], [[k, *(v.get(c) for c in cols)] for k, v in value.items()]
                )
        return Pairs([(k, value_node(v, depth + 1)) for k, v in value.items()])
    if isinstance(value, list):
        if value and all(isinstance(v, Mapping) for v in value):
            cols = _columns(value)
            return Table(
                cols, [[value_node(v.get(c), depth + 1) for c in cols] for v in value[:MAX_ROWS]]
            )
        return ", ".join(fmt(v) for v in value)
    return value


def _columns(maps: Any) -> list[Any]:
    """Every key of these maps, in the order first seen."""
    cols: list[Any] = []
    for m in maps:
        cols += [k for k in m if k not in cols]
    return cols


def _analysis(analysis: Mapping[str, Any]) -> tuple[Any, list[tuple[str, Any]]]:
    """The label analysis: its plain numbers as one node, then a titled node per nested part."""
    plain = {k: v for k, v in analysis.items() if not isinstance(v, Mapping | list)}
    parts = [
        (str(k).replace("_", " "), value_node(v)) for k, v in analysis.items() if k not in plain
    ]
    return (value_node(plain) if plain else None), parts


def timeline_chart(timeline: Sequence[Sequence[int]], budget: float | None) -> Chart | None:
    """The chart of PATCH calls per second (at most 120 bars), or None when none was sent."""
    if not timeline:
        return None
    start, end = timeline[0][0], timeline[-1][0]
    span = end - start + 1
    size = math.ceil(span / min(120, span))
    buckets = math.ceil(span / size)
    per = [0.0] * buckets
    for sec, n in timeline:
        per[(sec - start) // size] += n / size
    top = max([*per, budget or 0.0]) * 1.15 or 1.0
    width, height, pad = 720, 220, 36
    plot = height - pad
    bar_w = (width - pad - 8) / buckets
    bars = [
        Bar(
            x=pad + i * bar_w,
            y=plot - plot * rate / top,
            width=max(bar_w - 1, 0.5),
            height=plot * rate / top,
            start=size * i,
            end=size * (i + 1),
            rate=rate,
        )
        for i, rate in enumerate(per)
    ]
    ticks = [(plot - plot * (top / 1.15 * f) / top, top / 1.15 * f) for f in (0.0, 0.5, 1.0)]
    budget_y = plot - plot * budget / top if budget else None
    return Chart(width, height, pad, bars, ticks, budget or None, budget_y, span, size)
