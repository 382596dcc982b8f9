"""Report: what a run did, from the files in its folder, as JSON, Markdown and HTML.

``report.json`` has the stable keys of DESIGN; ``report.md`` is for CI logs and chat;
``report.html`` is one self-contained file (inline CSS and SVG, no scripts, no network) for a
person: the headline status and its cause, numbers that add up, labels by source and by model, the
feedback distribution, the label analysis, requests over time against the budget, and failures and
rejects with their reasons. Every string that came from logs, CSV files or the API is escaped in
both renderings.

Everything comes from the run folder: the stage results, ``plan.parquet`` and ``verify.parquet``,
``rejects.json`` and ``outcome.json``. So `render_report` is a pure re-render: it reads only that
folder and writes nothing; `build_report` (the end of a run) also writes the three files into it.

The parts, each a layer over the one before::

    inputs     read the run folder (read_stages: each stage's typed result, the one reader)
    judge      status, problems (the cause first), exit code
    assemble   report.json
    extras     the tables beyond report.json (from the Parquet files and the results' lists)
    view       what both renderings show, as plain values
    markdown   report.md
    html       report.html (templates/: jinja2, autoescape on; the SVG chart a macro)
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.config import JobConfig
from pipeline.report.assemble import assemble
from pipeline.report.extras import gather_extras
from pipeline.report.html import render_html
from pipeline.report.inputs import OUTCOME_FILE, REJECTS_FILE, read_run_folder
from pipeline.report.judge import OK_STATUSES, judge
from pipeline.report.markdown import render_markdown
from pipeline.run_result import STAGES
from pipeline.state import store
from pipeline.state.store import RunInfo

FORMATS = ("json", "md", "html")

__all__ = [
    "FORMATS",
    "OK_STATUSES",
    "OUTCOME_FILE",
    "REJECTS_FILE",
    "STAGES",
    "ReportResult",
    "assemble",
    "build_report",
    "exit_code_for",
    "judge",
    "render_report",
    "report",
    "write_report",
]


@dataclass(frozen=True)
class ReportResult:
    """A rendered report. ``texts`` holds report.json/.md/.html as text; ``paths`` where they are:
    written by this call (`build_report`, or `report` with ``out``), or else the run folder's
    existing report files (a pure re-render writes nothing)."""

    run_id: str
    status: str  # ok | nothing_to_do | partial | failed
    exit_code: int  # the run's: 0, 1, or the error's (e.g. 3 for a refused token)
    data: dict[str, Any]  # report.json
    paths: dict[str, Path]
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """The run succeeded: every planned change applied and verified, or nothing to do."""
        return self.status in OK_STATUSES

    def to_json(self) -> dict[str, Any]:
        return self.data

    def summary(self) -> str:
        return f"report {self.run_id}: {self.status}; " + ", ".join(
            f"{fmt} {path}" for fmt, path in self.paths.items()
        )


def exit_code_for(report: ReportResult | Mapping[str, Any]) -> int:
    """The run's exit code: 0 when it succeeded (ok, nothing to do), the error's exit code when an
    error stopped it (3 for a refused token), else 1 (the report says which changes)."""
    if isinstance(report, ReportResult):
        return report.exit_code
    if isinstance(report.get("exit_code"), int):
        return int(report["exit_code"])
    return 0 if report.get("status") in OK_STATUSES else 1


def render_report(job: JobConfig | None, run: RunInfo, *, now: float | None = None) -> ReportResult:
    """The report of a run, rendered from its folder alone; writes nothing. ``job`` may be None (the
    ``report`` command has only the run id): it only decides the budget and whether verification
    was expected when the run folder does not say."""
    folder = read_run_folder(run)
    data = assemble(
        run, folder.results, job=job, now=now, outcome=folder.outcome, inbox=folder.inbox
    )
    extras, damaged = gather_extras(folder)
    data["problems"] += damaged
    texts = {
        "json": json.dumps(data, indent=2, default=str) + "\n",
        "md": render_markdown(data, extras),
        "html": render_html(data, extras),
    }
    existing = {fmt: run.paths.report(fmt) for fmt in FORMATS if run.paths.report(fmt).is_file()}
    return ReportResult(run.run_id, data["status"], data["exit_code"], data, existing, texts)


def write_report(result: ReportResult, folder: Path) -> ReportResult:
    """Write report.json/.md/.html into ``folder`` (atomically); the result with their paths."""
    paths = {
        fmt: store.write_text_atomic(result.texts[fmt], folder / f"report.{fmt}") for fmt in FORMATS
    }
    return replace(result, paths=paths)


def build_report(
    job: JobConfig | None, run: RunInfo, *, now: float | None = None, write: bool = True
) -> ReportResult:
    """The end of a run: render its report and write report.json/.md/.html into its folder."""
    result = render_report(job, run, now=time.time() if now is None else now)
    return write_report(result, run.paths.root) if write else result


def report(
    run_id: str, data_dir: Path, *, job: JobConfig | None = None, out: Path | None = None
) -> ReportResult:
    """The ``aigw-feedback report RUN_ID`` entry point: a pure re-render of the run folder, which
    it never writes to; with ``out``, report.json/.md/.html are written into that folder. An
    unknown run id is a usage error, and no folder is created for it."""
    result = render_report(job, store.open_run(data_dir, run_id))
    return write_report(result, out) if out is not None else result
