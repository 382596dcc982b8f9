"""The run history for people: what `aigw-feedback runs` shows, as one library call.

`list_runs_report` only looks. It never creates the data dir or the state database (a typo in
--data-dir must not leave folders behind), and works on a read-only data dir; a data dir where
nothing has run yet is a listing that says so, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.state import history
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
