"""report.html: one self-contained page (inline CSS and SVG, no scripts, no network) for a person.

The page is the jinja2 template ``templates/report.html.j2``, with autoescape on. Every value put
into it passes `_finalize`: formatted as the Markdown formats it (`view.fmt`), then HTML-escaped,
quotes included — unless it is already markup, i.e. a macro's output. So a string from a log, a CSV
file or the API can only ever arrive as text. This module prepares plain values: the tables as
`Table` for the ``tables.html.j2`` macros, and the charts' geometry (`pipeline.report.charts`) for
the ``charts.html.j2`` macros; every label a person reads comes from `pipeline.report.words`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import jinja2
from markupsafe import Markup

from pipeline.report import charts, words
from pipeline.report.extras import Extras
from pipeline.report.view import (
    CHANGE_HEADER,
    COVERAGE_HEADER,
    FAILURE_HEADER,
    FEEDBACK_HEADER,
    FILES_HEADER,
    MAX_ROWS,
    MODEL_HEADER,
    OVERLAP_HEADER,
    REJECT_HEADER,
    SCORE_HEADER,
    coverage_rows,
    failure_count,
    failure_rows,
    feedback_rows,
    file_rows,
    fmt,
    headline,
    model_rows,
    more_rows,
    overlap_rows,
    pct,
    reject_rows,
    rejected_count,
    score_rows,
    source_rows,
    stage_items,
    status_word,
    sums,
)


@dataclass(frozen=True)
class Table:
    """A table with a header row; a cell is a plain value or another node. ``kinds`` gives a
    column a CSS class: ``n`` a number (right, never broken), ``nowrap`` a name or an id kept on
    one line (a file name is never split mid-word); the table scrolls in its own box."""

    header: Sequence[Any]
    rows: Sequence[Sequence[Any]]
    kinds: Sequence[str] = ()


@dataclass(frozen=True)
class Pairs:
    """A key / value table (class ``kv``); a value is a plain value or another node."""

    rows: Sequence[tuple[Any, Any]]


@dataclass(frozen=True)
class StageChart:
    """One stage's requests over time, with its caption."""

    stage: str
    title: str
    caption: str
    chart: charts.TimeChart
    averaged: bool


def _finalize(value: Any) -> Markup:
    if isinstance(value, Markup):
        return value
    # The escaping itself (stdlib, quotes as &quot;), so this Markup is safe by construction.
    return Markup(html.escape(fmt(value), quote=True))  # noqa: S704


def environment() -> jinja2.Environment:
    """The templates' environment (shared with the runs page): autoescape, every value through
    `_finalize`, an undefined name an error."""
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


ENV = environment()

CHANGE_KINDS = ("n", "n", "nowrap", "nowrap", "nowrap")


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
    analysis = extras.analysis or {}
    sources = analysis.get("sources") if isinstance(analysis.get("sources"), Mapping) else None
    by_source = data["labels"]["by_source"]
    if sources is None and by_source:  # no analysis: the label result's counts per source
        sources = {k: {"labels": v} for k, v in by_source.items() if isinstance(v, int)}
    names = list(sources or {})
    pairs = (analysis.get("agreement") or {}).get("sources") or []
    return ENV.get_template("report.html.j2").render(
        data=data,
        status_word=status_word(data),
        cause=cause,
        sentence=sentence,
        others=others,
        tiles=tiles,
        sums=sums(data),
        stages=[(words.STAGE_NAMES[n], ran, items) for n, ran, items in stage_items(data)],
        feedback=Table(FEEDBACK_HEADER, feedback_rows(extras), ("", "n", "n", "n"))
        if extras.feedback
        else None,
        score=Table(SCORE_HEADER, score_rows(extras), ("", "n", "n", "n"))
        if extras.score
        else None,
        feedback_note=extras.feedback_note,
        by_source=Table(("source", *CHANGE_HEADER), source_rows(extras), ("nowrap", *CHANGE_KINDS))
        if extras.by_source
        else None,
        models=Table(
            (*MODEL_HEADER, *CHANGE_HEADER), model_rows(extras), ("nowrap", "nowrap", *CHANGE_KINDS)
        )
        if extras.by_model
        else None,
        stage_charts=stage_charts(extras, req["budget_per_s"]),
        budget=charts.number(req["budget_per_s"]) if req["budget_per_s"] else None,
        budget_share=pct(req["utilisation"]),
        coverage=charts.coverage_chart(sources or {}, analysis.get("window_logs")),
        coverage_table=Table(COVERAGE_HEADER, coverage_rows(analysis), ("nowrap", *"nnnnnn"))
        if sources and analysis
        else None,
        matrix=charts.overlap_matrix(
            names, {k: int(v.get("labels") or 0) for k, v in (sources or {}).items()}, pairs
        ),
        source_names=names,
        overlaps=Table(OVERLAP_HEADER, overlap_rows(analysis), ("", "n", "nowrap", "n", "n"))
        if pairs
        else None,
        window_logs=analysis.get("window_logs"),
        overlapping_logs=analysis.get("overlapping_logs"),
        files=Table(FILES_HEADER, file_rows(extras), ("nowrap", "", "nowrap", "n", "n", "n", "n"))
        if extras.csv_files
        else None,
        failures=Table(FAILURE_HEADER, failure_rows(extras), ("nowrap", "nowrap", "n", ""))
        if extras.failures
        else None,
        failures_more=more_rows(extras.failures),
        failure_count=failure_count(data, extras),
        rejects=Table(
            (*REJECT_HEADER, "row"),
            reject_rows(extras, with_row=True),
            ("nowrap", "n", "text", "text"),
        )
        if extras.rejects
        else None,
        rejects_more=more_rows(extras.rejects),
        rejected_count=rejected_count(data, extras),
    )


def stage_charts(extras: Extras, budget: float | None) -> list[StageChart]:
    """A chart per stage that sent requests, each captioned with its numbers."""
    out = []
    for s in extras.stage_requests:
        chart = charts.time_chart(s.requests, s.seconds, budget, s.timeline)
        if chart is None:
            continue
        how = (
            "counted each second"
            if s.per_second
            else "the average over the stage (it records no per-second count)"
        )
        caption = f"{s.requests:,} requests in {fmt(s.seconds)} s; bars: {how}"
        out.append(
            StageChart(s.stage, words.STAGE_TITLES[s.stage], caption, chart, not s.per_second)
        )
    return out


def render_value(value: Any) -> Markup:
    """Any JSON value as HTML (maps become tables), escaped."""
    return _macro("tables.html.j2", "value", value_node(value))


def stage_svg(requests: int, seconds: float, budget: float | None, timeline: Any = None) -> Markup:
    """One stage's requests-over-time chart as inline SVG ("" when it sent nothing)."""
    chart = charts.time_chart(requests, seconds, budget, timeline)
    return (
        Markup("") if chart is None else _macro("charts.html.j2", "time_chart", chart, "requests")
    )


def _macro(template: str, name: str, *args: Any) -> Markup:
    """Call a macro of a template from Python; with autoescape on, it returns Markup."""
    return cast(Markup, getattr(ENV.get_template(template).module, name)(*args))


def value_node(value: Any, depth: int = 0) -> Any:
    """A JSON value as what shows it: a map of flat maps as one `Table` (a row per key), a list of
    maps as a `Table` (a row per item, at most MAX_ROWS), any other map as `Pairs`, a list of
    plain values as one line of text, anything else as itself. Keys are shown in words."""
    if isinstance(value, Mapping):
        if value and all(isinstance(v, Mapping) for v in value.values()) and depth < 3:
            cols = _columns(value.values())
            if all(not isinstance(v.get(c), Mapping | list) for v in value.values() for c in cols):
                return Table(
                    ["", *(words.spaced(c) for c in cols)],
                    [[k, *(v.get(c) for c in cols)] for k, v in value.items()],
                )
        return Pairs([(words.spaced(k), value_node(v, depth + 1)) for k, v in value.items()])
    if isinstance(value, list):
        if value and all(isinstance(v, Mapping) for v in value):
            cols = _columns(value)
            return Table(
                [words.spaced(c) for c in cols],
                [[value_node(v.get(c), depth + 1) for c in cols] for v in value[:MAX_ROWS]],
            )
        return ", ".join(fmt(v) for v in value)
    return value


def _columns(maps: Any) -> list[Any]:
    """Every key of these maps, in the order first seen."""
    cols: list[Any] = []
    for m in maps:
        cols += [k for k in m if k not in cols]
    return cols
