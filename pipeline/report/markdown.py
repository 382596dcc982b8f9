"""report.md: the report for CI logs and chat.

Every string that came from logs, CSV files, the job file or the API is escaped (`text`) so it
shows as written: HTML in a log field or a file name (``<script>``) stays text, a ``|`` cannot
split a table cell, and backticks, emphasis and link brackets do not turn into markup. What this
module writes itself (headings, the sums, the notes with their `code`) is Markdown on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pipeline.report.extras import Extras
from pipeline.report.view import (
    CHANGE_HEADER,
    COVERAGE_HEADER,
    FAILURE_HEADER,
    FEEDBACK_HEADER,
    FILES_HEADER,
    MODEL_HEADER,
    OVERLAP_HEADER,
    REJECT_HEADER,
    REQUESTS_HEADER,
    SCORE_HEADER,
    coverage_rows,
    failure_count,
    failure_rows,
    feedback_rows,
    file_rows,
    fmt,
    headline,
    model_rows,
    overlap_rows,
    pct,
    reject_rows,
    rejected_count,
    request_rows,
    score_rows,
    source_count,
    source_rows,
    stage_numbers,
    status_word,
    sums,
)

# Characters that start markup anywhere in a line: HTML (< >), code, emphasis, strikethrough,
# links and images, table cells; and the backslash that escapes them. Escaped with a backslash,
# which CommonMark and GitHub's tables render as the character itself.
_MARKUP = re.compile(r"([\\`*~\[\]<>|])")
# An underscore emphasises only at the edge of a word, so `missing_key` stays as it is.
_EDGE_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_NEWLINES = re.compile(r"[\r\n]+")


def text(value: Any) -> str:
    """A value from a log, a file or the API as Markdown text that shows it as written, on one line."""
    escaped = _MARKUP.sub(r"\\\1", _NEWLINES.sub(" ", fmt(value)))
    return _EDGE_UNDERSCORE.sub(r"\\_", escaped)


def code(value: Any) -> str:
    """A value as a code span, fenced by more backticks than it holds (no escapes work inside)."""
    body = _NEWLINES.sub(" ", fmt(value))
    fence = "`" * (max((len(run) for run in re.findall(r"`+", body)), default=0) + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(text(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def render_markdown(data: Mapping[str, Any], extras: Extras) -> str:
    """The same sections and numbers as report.html, in its order; tables instead of charts."""
    w = data["window"]
    cause, sentence, others = headline(data)
    lines = [f"# aigw-feedback run {text(data['run_id'])}: **{status_word(data)}**", ""]
    if cause is not None:
        lines += [f"**Why:** {text(cause)}", ""]
    elif sentence is not None:
        lines += [sentence, ""]
    lines += [f"- {text(p)}" for p in others] + ([""] if others else [])
    lines += [
        f"Job {code(data['job'])}, gateway {code(data['gateway_id'])}, window "
        f"{text(w['start'])} to {text(w['end'])}, ran {text(data['started_at'])} to "
        f"{text(data['finished_at'])}. Exit code {data['exit_code']}.",
        "",
    ]
    if data["not_run"]:
        lines += [f"Not run: {', '.join(data['not_run'])}.", ""]
    lines += ["## What changed", ""]
    if extras.feedback:
        lines += ["### Feedback on the labeled logs", ""]
        lines += table(FEEDBACK_HEADER, feedback_rows(extras))
        if extras.feedback_note:
            lines += [extras.feedback_note, ""]
    else:
        lines += ["Nothing was planned, so nothing changed.", ""]
    if extras.score:
        lines += ["### Scores on the labeled logs", ""]
        lines += table(SCORE_HEADER, score_rows(extras))
    if extras.by_source:
        lines += ["### By source", ""]
        lines += table(("source", *CHANGE_HEADER), source_rows(extras))
    if extras.by_model:
        lines += ["### By provider and model", ""]
        lines += table((*MODEL_HEADER, *CHANGE_HEADER), model_rows(extras))
    req = data["requests"]
    lines += ["## Requests", ""]
    lines += [
        f"{fmt(req['total'])} requests in all, {pct(req['utilisation'])} of the budget of "
        f"{fmt(req['budget_per_s'])} requests per second.",
        "",
    ]
    if extras.stage_requests:
        lines += table(REQUESTS_HEADER, request_rows(extras))
    lines += _labels(data, extras)
    lines += ["## Numbers that add up", ""]
    lines += [f"- {'✓' if ok else '✗ does not add up:'} {s}" for s, ok in sums(data)]
    lines.append("")
    lines += ["## Stage by stage", ""]
    lines += table(["stage", "numbers"], stage_numbers(data))
    if extras.failures:
        lines += [f"## Failures ({fmt(failure_count(data, extras))})", ""]
        lines += table(FAILURE_HEADER, failure_rows(extras))
    if extras.rejects:
        lines += [f"## Rejected rows ({fmt(rejected_count(data, extras))})", ""]
        lines += table(REJECT_HEADER, reject_rows(extras))
    return "\n".join(lines).rstrip() + "\n"


def _labels(data: Mapping[str, Any], extras: Extras) -> list[str]:
    """Coverage per source, where sources overlap, and the inbox's files."""
    lines = ["## Labels", ""]
    coverage = coverage_rows(extras.analysis)
    if coverage:
        lines += table(COVERAGE_HEADER, coverage)
    elif data["labels"]["by_source"]:
        by_source = data["labels"]["by_source"]
        lines += table(["source", "labels"], [(k, source_count(v)) for k, v in by_source.items()])
    else:
        lines += ["No labels.", ""]
    overlaps = overlap_rows(extras.analysis)
    if overlaps:
        lines += ["### Agreement where sources overlap", ""]
        lines += table(OVERLAP_HEADER, overlaps)
    if extras.csv_files:
        lines += ["### Files in the inbox", ""]
        lines += table(FILES_HEADER, file_rows(extras))
    return lines
