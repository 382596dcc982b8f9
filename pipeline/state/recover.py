"""Rebuilding the run history from the run folders, after a damaged state database was set aside.

`pipeline.state.database` renames a state.sqlite that is not a sound SQLite database and starts a
new one, so the history of runs is gone from it while their folders are still there. Each folder
says enough of itself to be recorded again: run.json (id, job, gateway, window, when), and
outcome.json / report.json for how it ended. A run with neither is recorded as interrupted. Called
by every invocation that holds a job's lock, before it looks at the history.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.state.database import state_db
from pipeline.state.history import (
    COLUMNS,
    MODES,
    STATUSES,
    SUCCEEDED,
    ensure_tables,
    get_watermark,
)
from pipeline.state.store import open_run, runs_dir
from pipeline.timefmt import iso


def recover_runs(data_dir: Path, *, now: datetime) -> list[str]:
    """Record the runs whose folders the history does not know (after a damaged state database
    was set aside, see `pipeline.state.database`), from what each folder says of itself: run.json,
    and outcome.json / report.json for how it ended (a run with neither was interrupted). A nightly
    job without a watermark gets the end of its newest successful nightly run. Returns the ids.
    """
    folders = runs_dir(data_dir)
    if not folders.is_dir():
        return []
    with state_db(data_dir) as db:
        ensure_tables(db)
        known = {row[0] for row in db.execute("SELECT run_id FROM runs")}
    recovered: list[str] = []
    for folder in sorted(p for p in folders.iterdir() if p.is_dir() and p.name not in known):
        try:
            run = open_run(data_dir, folder.name)
        except PipelineError:
            continue  # not a run folder, or one whose run.json says nothing: left as it is
        outcome = _json(run.paths.outcome)
        report = _json(run.paths.report("json"))
        status = str(report.get("status") or "interrupted") if outcome else "interrupted"
        if status not in STATUSES or status == "running":
            status = "interrupted"
        mode = str(outcome.get("mode") or "window")
        with state_db(data_dir) as db:
            db.execute(
                f"INSERT OR IGNORE INTO runs ({COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, '{}', ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.run_id,
                    run.job,
                    run.gateway_id,
                    iso(run.window.start),
                    iso(run.window.end),
                    mode if mode in MODES else "window",
                    status,
                    iso(run.created_at),
                    str(outcome.get("started_at") or iso(run.created_at)),
                    outcome.get("finished_at") if status != "interrupted" else None,
                    int(outcome.get("attempts") or 1),
                    (outcome.get("error") or {}).get("message"),
                    outcome.get("stopped"),
                    f"recovered from its run folder at {iso(now)}",
                ),
            )
        recovered.append(run.run_id)
        if mode == "nightly" and status in SUCCEEDED:
            mark = get_watermark(data_dir, run.job, run.gateway_id)
            if mark is None or mark < run.window.end:
                with state_db(data_dir) as db:
                    db.execute(
                        "INSERT INTO watermarks (job, gateway_id, position, run_id, updated_at) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (job, gateway_id) DO UPDATE SET "
                        "position = excluded.position, run_id = excluded.run_id, "
                        "updated_at = excluded.updated_at",
                        (run.job, run.gateway_id, iso(run.window.end), run.run_id, iso(now)),
                    )
    return recovered


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
