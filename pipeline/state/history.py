"""Run history and nightly watermarks, in state.sqlite.

runs        one row per run: id, job, gateway, window, mode (nightly | window | backfill | apply), status,
            headline counts, start and finish times, how many times it was started (a resumed run
            counts again), the last error, and when it was last interrupted and who took it over.
watermarks  per job and gateway: where contiguous verified nightly coverage ends. The next nightly
            run starts there, so nights that were missed are caught up.

A run's status:

    running ──► ok | nothing_to_do | partial | failed | dry_run     it ended, and said so
       │
       └──► interrupted    its process died (SIGKILL, power, OOM) without recording an end; the
                           next invocation of the job, holding the lock, finds it so and resumes it
                           first (back to running, with the same run folder and journal)
The watermark only ever moves forward, only after a run ended `ok` (every planned change applied and
verified), and only when that run's window touches it (start <= watermark < end), so it never jumps
over a gap. The first nightly run of a job sets it to its window's start (so the next nightly run
covers that night again if it does not end ok). Backfill runs never move it.

Rebuilding this history from the run folders (after a damaged state database was set aside) is
`pipeline.state.recover`; the listing people read (`aigw-feedback runs`) is `pipeline.runs`.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.state.database import state_db
from pipeline.timefmt import iso
from pipeline.window import Window

STATUSES = ("running", "ok", "nothing_to_do", "partial", "failed", "dry_run", "interrupted")
MODES = ("nightly", "window", "backfill", "apply")
UNFINISHED = ("running", "interrupted", "partial", "failed")
SUCCEEDED = ("ok", "nothing_to_do")  # every planned change applied and verified (or none needed)

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS runs (
        run_id       TEXT PRIMARY KEY,
        job          TEXT NOT NULL,
        gateway_id   TEXT NOT NULL,
        window_start TEXT NOT NULL,
        window_end   TEXT NOT NULL,
        mode         TEXT NOT NULL,
        status       TEXT NOT NULL,
        counts       TEXT NOT NULL DEFAULT '{}',
        created_at   TEXT NOT NULL,
        started_at   TEXT NOT NULL,
        finished_at  TEXT,
        attempts     INTEGER NOT NULL DEFAULT 1,
        error        TEXT,
        stopped      TEXT,
        interrupted  TEXT
    )
    """,
    "CREATE INDEX IF NOT EXISTS runs_by_job ON runs (job, gateway_id, created_at)",
    """
    CREATE TABLE IF NOT EXISTS watermarks (
        job        TEXT NOT NULL,
        gateway_id TEXT NOT NULL,
        position   TEXT NOT NULL,
        run_id     TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (job, gateway_id)
    )
    """,
)


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def ensure_tables(db: sqlite3.Connection) -> None:
    """The runs and watermarks tables, created (or given the columns added since) if missing."""
    for statement in _SCHEMA:
        db.execute(statement)
    columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    for column in ("stopped", "interrupted"):  # state files written before the column existed
        if column not in columns:
            db.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT")


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    job: str
    gateway_id: str
    window: Window
    mode: str
    status: str
    counts: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 1
    error: str | None = None
    stopped: str | None = None  # why a partial run stopped early (a request or time cap)
    interrupted: str | None = None  # when its process died, and which invocation took it over

    @property
    def seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "job": self.job,
            "gateway_id": self.gateway_id,
            "window": {"start": iso(self.window.start), "end": iso(self.window.end)},
            "mode": self.mode,
            "status": self.status,
            "counts": self.counts,
            "created_at": iso(self.created_at) if self.created_at else None,
            "started_at": iso(self.started_at) if self.started_at else None,
            "finished_at": iso(self.finished_at) if self.finished_at else None,
            "seconds": self.seconds,
            "attempts": self.attempts,
            "error": self.error,
            "stopped": self.stopped,
            "interrupted": self.interrupted,
        }


COLUMNS = (  # of the runs table, in the order `_record` reads a row
    "run_id, job, gateway_id, window_start, window_end, mode, status, counts, created_at, "
    "started_at, finished_at, attempts, error, stopped, interrupted"
)


def _record(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(
        run_id=row[0],
        job=row[1],
        gateway_id=row[2],
        window=Window(_dt(row[3]), _dt(row[4])),
        mode=row[5],
        status=row[6],
        counts=json.loads(row[7] or "{}"),
        created_at=_dt(row[8]) if row[8] else None,
        started_at=_dt(row[9]) if row[9] else None,
        finished_at=_dt(row[10]) if row[10] else None,
        attempts=int(row[11]),
        error=row[12],
        stopped=row[13],
        interrupted=row[14],
    )


def record_started(
    data_dir: Path,
    *,
    run_id: str,
    job: str,
    gateway_id: str,
    window: Window,
    mode: str,
    started_at: datetime,
    created_at: datetime | None = None,
) -> None:
    """A run starts, or a recorded run is started again (resumed): status back to `running`."""
    if mode not in MODES:
        raise ValueError(f"unknown run mode {mode!r}")
    with state_db(data_dir) as db:
        ensure_tables(db)
        db.execute(
            f"INSERT INTO runs ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 'running', '{{}}', ?, ?, NULL, 1, "
            "NULL, NULL, NULL) ON CONFLICT (run_id) DO UPDATE SET status = 'running', started_at = "
            "excluded.started_at, finished_at = NULL, attempts = runs.attempts + 1, error = NULL, "
            "stopped = NULL",
            (
                run_id,
                job,
                gateway_id,
                iso(window.start),
                iso(window.end),
                mode,
                iso(created_at or started_at),
                iso(started_at),
            ),
        )


def record_finished(
    data_dir: Path,
    run_id: str,
    *,
    status: str,
    counts: dict[str, Any],
    finished_at: datetime,
    error: str | None = None,
    stopped: str | None = None,
) -> None:
    if status not in STATUSES or status == "running":
        raise ValueError(f"not a final run status: {status!r}")
    with state_db(data_dir) as db:
        ensure_tables(db)
        db.execute(
            "UPDATE runs SET status = ?, counts = ?, finished_at = ?, error = ?, stopped = ? "
            "WHERE run_id = ?",
            (status, json.dumps(counts, sort_keys=True), iso(finished_at), error, stopped,
             run_id),
        )  # fmt: skip


def mark_interrupted(
    data_dir: Path, job: str, gateway_id: str, *, taken_over_by: str, now: datetime
) -> list[RunRecord]:
    """Runs of this job still `running` in the history are dead: call them `interrupted`.

    Only the holder of the job's lock may call this (so no live process owns those runs). Returns
    them, oldest first, for the caller to resume.
    """
    with state_db(data_dir) as db:
        ensure_tables(db)
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute(
                f"SELECT {COLUMNS} FROM runs WHERE job = ? AND gateway_id = ? AND status = "
                "'running' ORDER BY created_at, rowid",
                (job, gateway_id),
            ).fetchall()
            note = f"its process died; taken over at {iso(now)} by {taken_over_by}"
            db.executemany(
                "UPDATE runs SET status = 'interrupted', interrupted = ?, finished_at = NULL "
                "WHERE run_id = ?",
                [(note, row[0]) for row in rows],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return [replace(_record(row), status="interrupted", interrupted=note) for row in rows]


def get_run(data_dir: Path, run_id: str, *, readonly: bool = False) -> RunRecord | None:
    rows = _select(
        data_dir, f"SELECT {COLUMNS} FROM runs WHERE run_id = ?", [run_id], readonly=readonly
    )
    return _record(rows[0]) if rows else None


def list_runs(
    data_dir: Path,
    *,
    job: str | None = None,
    gateway_id: str | None = None,
    mode: str | None = None,
    window: Window | None = None,
    limit: int | None = 20,
    readonly: bool = False,
) -> list[RunRecord]:
    """Recorded runs, newest (created) first, optionally for one job / gateway / mode / window.

    ``readonly``: only look (`aigw-feedback runs`): works on a read-only data dir, creates nothing.
    """
    where: list[str] = []
    args: list[Any] = []
    if job is not None:
        where.append("job = ?")
        args.append(job)
    if gateway_id is not None:
        where.append("gateway_id = ?")
        args.append(gateway_id)
    if mode is not None:
        where.append("mode = ?")
        args.append(mode)
    if window is not None:
        where.append("window_start = ? AND window_end = ?")
        args += [iso(window.start), iso(window.end)]
    sql = f"SELECT {COLUMNS} FROM runs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, rowid DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    rows = _select(data_dir, sql, args, readonly=readonly)
    return [_record(row) for row in rows]


def _select(data_dir: Path, sql: str, args: list[Any], *, readonly: bool) -> list[Any]:
    """Rows of a query; a read-only look at a state file that has no such table yet finds none."""
    with state_db(data_dir, readonly=readonly) as db:
        if not readonly:
            ensure_tables(db)
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if readonly and "no such" in str(exc):
                return []
            raise


# ---------------------------------------------------------------------------------------------
# Watermarks


def get_watermark(data_dir: Path, job: str, gateway_id: str) -> datetime | None:
    """Where the job's verified nightly coverage ends, or None before its first verified run."""
    with state_db(data_dir) as db:
        ensure_tables(db)
        row = db.execute(
            "SELECT position FROM watermarks WHERE job = ? AND gateway_id = ?", (job, gateway_id)
        ).fetchone()
    return None if row is None else _dt(row[0])


def start_watermark(
    data_dir: Path, job: str, gateway_id: str, position: datetime, *, run_id: str, now: datetime
) -> datetime:
    """Where a job's nightly coverage starts: set by its first nightly run, if not set already.

    So a first night that does not end ok is still covered by the next nightly run.
    """
    with state_db(data_dir) as db:
        ensure_tables(db)
        db.execute(
            "INSERT INTO watermarks (job, gateway_id, position, run_id, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (job, gateway_id) DO NOTHING",
            (job, gateway_id, iso(position), run_id, iso(now)),
        )
        row = db.execute(
            "SELECT position FROM watermarks WHERE job = ? AND gateway_id = ?", (job, gateway_id)
        ).fetchone()
    return _dt(row[0])


def advance_watermark(
    data_dir: Path,
    job: str,
    gateway_id: str,
    window: Window,
    *,
    run_id: str,
    now: datetime,
    may_start: bool,
) -> datetime | None:
    """After a run ended `ok`: move the watermark to the window's end if the window touches it.

    `may_start`: a nightly run may set the first watermark; an explicit window may not (running
    last January by hand must not make the next nightly run catch up from last January).
    Returns the watermark after the call.
    """
    with state_db(data_dir) as db:
        ensure_tables(db)
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT position FROM watermarks WHERE job = ? AND gateway_id = ?",
                (job, gateway_id),
            ).fetchone()
            current = None if row is None else _dt(row[0])
            move = may_start if current is None else window.start <= current < window.end
            if move:
                db.execute(
                    "INSERT INTO watermarks (job, gateway_id, position, run_id, updated_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (job, gateway_id) DO UPDATE SET "
                    "position = excluded.position, run_id = excluded.run_id, "
                    "updated_at = excluded.updated_at",
                    (job, gateway_id, iso(window.end), run_id, iso(now)),
                )
                current = window.end
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return current


def list_watermarks(
    data_dir: Path, *, job: str | None = None, readonly: bool = False
) -> list[tuple[str, str, datetime]]:
    """(job, gateway_id, position) of every watermark, for `aigw-feedback runs`."""
    sql = "SELECT job, gateway_id, position FROM watermarks"
    args: list[Any] = []
    if job is not None:
        sql += " WHERE job = ?"
        args.append(job)
    rows = _select(data_dir, sql + " ORDER BY job, gateway_id", args, readonly=readonly)
    return [(str(r[0]), str(r[1]), _dt(r[2])) for r in rows]
