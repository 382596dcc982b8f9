"""The run history for people: what `aigw-feedback runs` shows, as one library call.

`list_runs_report` only looks. It never creates the data dir or the state database (a typo in
--data-dir must not leave folders behind), and works on a read-only data dir; a data dir where
nothing has run yet is a listing that says so, not an error.

`runs_page` is the same history as one self-contained HTML page (`aigw-feedback runs --html`):
a chart per measure over the nights (labels, patched, verified, failed, requests), then a row per
run with its status and a relative link to its report.html. It is the report's template
environment and stylesheet (templates/runs.html.j2 includes report.css), so it looks the same.
The requests of a run come from its report.json, the other numbers from the runs table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError
from pipeline.report import charts
from pipeline.report.html import ENV
from pipeline.report.inputs import read_json
from pipeline.state import history, store
from pipeline.state.history import RunRecord
from pipeline.state.store import STATE_FILE
from pipeline.timefmt import human, iso
from pipeline.window import Window

Watermark = tuple[str, str, datetime]  # job, gateway id, where its verified nightly coverage ends


@dataclass(frozen=True)
class RunsListing:
    """Recorded runs, newest first, and the watermarks of the jobs listed."""

    data_dir: Path
    records: tuple[RunRecord, ...] = ()
    watermarks: tuple[Watermark, ...] = ()
    recorded: bool = True  # False: no state database in data_dir, nothing has run there yet

    @property
    def exit_code(self) -> int:
        return 0  # an empty history is an answer, not a failure

    def summary(self) -> str:
        """The table `aigw-feedback runs` prints."""
        if not self.recorded:
            return f"no runs recorded yet in {self.data_dir}"
        return runs_table(list(self.records), list(self.watermarks))

    def to_json(self) -> list[dict[str, Any]]:
        """One JSON object per run (`aigw-feedback runs --json` prints one a line)."""
        return [record.to_json() for record in self.records]


def list_runs_report(
    data_dir: Path, *, job: str | None = None, limit: int | None = 20
) -> RunsListing:
    """The `limit` newest runs in `data_dir` (of one job, if given) and the watermarks."""
    if not (data_dir / STATE_FILE).is_file():  # looking must not create the data dir
        return RunsListing(data_dir, recorded=False)
    records = history.list_runs(data_dir, job=job, limit=limit, readonly=True)
    watermarks = history.list_watermarks(data_dir, job=job, readonly=True)
    return RunsListing(data_dir, tuple(records), tuple(watermarks))


def window_text(window: Window) -> str:
    """2026-11-25 for one UTC day, 2026-11-23..2026-11-25 for whole days (end day included)."""
    start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
    if start.timetz() == end.timetz() == datetime.min.replace(tzinfo=UTC).timetz():
        last = (end - timedelta(days=1)).date()
        return str(last) if last == start.date() else f"{start.date()}..{last}"
    return str(window)


def runs_table(records: list[RunRecord], watermarks: list[Watermark] | None = None) -> str:
    """The `aigw-feedback runs` listing: one line per run, then the watermarks."""
    if not records:
        return "no runs recorded yet"
    header = ("RUN", "JOB", "GATEWAY", "MODE", "WINDOW", "STATUS", "LOGS", "PATCHED",
              "VERIFIED", "DURATION")  # fmt: skip
    rows = [header]
    for r in records:
        c = r.counts
        rows.append(
            (
                r.run_id,
                r.job,
                r.gateway_id,
                r.mode,
                window_text(r.window),
                r.status,
                _num(c.get("logs")),
                _num(c.get("patched")),
                _num(c.get("verified")),
                human(r.seconds),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]  # fmt: skip
    for r in records:
        if r.interrupted:
            lines.append(f"{r.run_id}: interrupted: {r.interrupted}")
        if r.error and r.status == "failed":
            lines.append(f"{r.run_id}: {r.error}")
        elif r.stopped and r.status == "partial":
            lines.append(f"{r.run_id}: stopped early: {r.stopped}")
    for job, gateway_id, position in watermarks or []:
        lines.append(f"watermark {job} on {gateway_id}: {iso(position)}")
    return "\n".join(lines)


def _num(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "-"


# The measures of the history page's charts: (title, where the number comes from).
MEASURES = (("labels", "labels"), ("patched", "patched"), ("verified", "verified"),
            ("failed", "failed"), ("requests", "requests"))  # fmt: skip
RUNS_PAGE = "runs.html"


@dataclass(frozen=True)
class RunRow:
    """One run on the history page."""

    record: RunRecord
    numbers: dict[str, int | None]  # MEASURES' keys
    report: str | None  # the link to its report.html, relative to the page; None: no report


@dataclass(frozen=True)
class RunsPage:
    """The history page, written: where, and how many runs it shows."""

    path: Path
    runs: int
    exit_code: int = 0

    def summary(self) -> str:
        return f"runs page {self.path}: {self.runs:,} runs"

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "runs": self.runs}


def runs_rows(listing: RunsListing, page: Path) -> list[RunRow]:
    """Each run of the listing (newest first) with its numbers and the link to its report."""
    rows = []
    for record in listing.records:
        folder = store.runs_dir(listing.data_dir) / record.run_id
        report_json = read_json(folder / "report.json") or {}
        requests = (report_json.get("requests") or {}).get("total")
        numbers: dict[str, int | None] = {
            key: _count(record.counts.get(key)) for key, _ in MEASURES if key != "requests"
        }
        numbers["requests"] = _count(requests)
        html = folder / "report.html"
        link = os.path.relpath(html.resolve(), page.resolve().parent) if html.is_file() else None
        rows.append(RunRow(record, numbers, link.replace(os.sep, "/") if link else None))
    return rows


def runs_page_html(listing: RunsListing, page: Path) -> str:
    """The history page's HTML: charts over the nights, oldest left, then the runs, newest first."""
    oldest_first = sorted(runs_rows(listing, page), key=_order)
    rows = oldest_first[::-1]
    charts_ = [
        charts.column_chart(
            title,
            [
                (_night(r.record), r.record.run_id, r.numbers[key], r.record.status)
                for r in oldest_first
            ],
        )
        for title, key in MEASURES
    ]
    return ENV.get_template("runs.html.j2").render(
        data_dir=str(listing.data_dir),
        rows=rows,
        charts=charts_ if rows else [],
        watermarks=[(job, gw, iso(at)) for job, gw, at in listing.watermarks],
        window_text=window_text,
        human=human,
        recorded=listing.recorded,
    )


def runs_page(
    data_dir: Path, *, out: Path | None = None, job: str | None = None, limit: int | None = None
) -> RunsPage:
    """Write the history page of ``data_dir`` (every run, or the ``limit`` newest) to ``out``
    (default: runs.html in the data dir, which must exist then; nothing else is created)."""
    listing = list_runs_report(data_dir, job=job, limit=limit)
    path = out if out is not None else data_dir / RUNS_PAGE
    if out is None and not data_dir.is_dir():
        raise UsageError(f"no data dir at {data_dir}: nothing has run there (or pass --out FILE)")
    path.parent.mkdir(parents=True, exist_ok=True)
    store.write_text_atomic(runs_page_html(listing, path), path)
    return RunsPage(path, len(listing.records))


def _order(row: RunRow) -> tuple[datetime, datetime, str]:
    """Oldest first: by the window, then by when the run started (a re-run after the first)."""
    r = row.record
    return r.window.start, r.started_at or r.created_at or r.window.start, r.run_id


def _night(record: RunRecord) -> str:
    """The x label of a run: the day of its window (11-25), or its start for a longer one."""
    text = window_text(record.window)
    return text[5:10] if len(text) >= 10 else text


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None
