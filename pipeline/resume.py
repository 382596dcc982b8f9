"""What a resumed run trusts from its folder, and what it rebuilds.

A run is resumed by its id: after a crash, a cap, a signal, or by `--run`. Its folder holds each
finished stage's result and hand-over files; the state database holds its journal and history.
Resuming trusts a stage only when both its result and its hand-overs read back; it rebuilds what
is damaged from the inputs that made it (run.json from the run history; a plan from the labels),
and it plans again, against what the server shows now, a run whose journal was lost.
"""

from __future__ import annotations

import importlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.config import JobConfig
from pipeline.errors import DamagedFileError, UsageError
from pipeline.result import JsonResult, read_result
from pipeline.state import history, store
from pipeline.state.journal import journal_has_rows
from pipeline.state.store import RunInfo
from pipeline.window import Window

log = logging.getLogger(__name__)

AUTO_RESUME_ATTEMPTS = 2  # a run that failed is retried by the next invocation once


def open_job_run(job: JobConfig, run_id: str) -> RunInfo:
    """A recorded run of this job and gateway (UsageError if it belongs to another).

    A damaged run.json is rebuilt from the run history, which holds the same facts."""
    data_dir = job.store.data_dir
    try:
        run = store.open_run(data_dir, run_id)
    except DamagedFileError:
        record = history.get_run(data_dir, run_id)
        if record is None:
            raise
        log.warning("run %s: run.json is damaged; rebuilt it from the run history", run_id)
        run = store.rewrite_run_info(
            data_dir,
            run_id,
            record.job,
            record.gateway_id,
            record.window,
            record.created_at or record.started_at or datetime.now(UTC),
        )
    if (run.job, run.gateway_id) != (job.name, job.gateway.gateway_id):
        raise UsageError(
            f"run {run_id} belongs to job {run.job!r} on gateway {run.gateway_id!r}, not to job "
            f"{job.name!r} on gateway {job.gateway.gateway_id!r}"
        )
    return run


def forget_stale_plan(run: RunInfo, data_dir: Path) -> None:
    """A run whose load started but whose journal is gone (the state database was damaged and set
    aside) cannot know which PATCHes landed: extract and plan it again, so the plan compares with
    what the server shows now and nothing that already landed is sent again."""
    if not run.paths.stage_result("load").exists() or journal_has_rows(data_dir, run.run_id):
        return
    log.warning(
        "run %s: its load journal is gone; extracting and planning it again so that nothing "
        "already written is sent twice",
        run.run_id,
    )
    for stage in ("extract", "plan", "load"):
        run.paths.stage_result(stage).unlink(missing_ok=True)


# Each stage's result type (it has from_json(data) -> the result), by the module that defines it:
# a stage's module is imported only when a result of it is there to read, so a new run's first
# request does not wait for the later stages' polars and pyarrow (start-up time).
RESULT_TYPES: dict[str, tuple[str, str]] = {
    "extract": ("pipeline.extract", "ExtractResult"),
    "label": ("pipeline.label", "LabelResult"),
    "plan": ("pipeline.plan", "PlanResult"),
    "load": ("pipeline.load", "LoadResult"),
    "verify": ("pipeline.verify", "VerifyResult"),
}


def result_type(stage: str) -> Any:
    """The result class of `stage` (see RESULT_TYPES)."""
    module, name = RESULT_TYPES[stage]
    return getattr(importlib.import_module(module), name)


def read_stage_result(run: RunInfo, stage: str) -> JsonResult | None:
    """A stage's result from an earlier attempt, if that stage is really done: its result file
    reads, and so do the files it handed over. A damaged hand-over is rebuilt, not trusted."""
    path = run.paths.stage_result(stage)
    if not path.exists():
        return None
    result: JsonResult | None = read_result(result_type(stage), path)
    if result is None:
        return None
    damaged = [p for p in run.paths.stage_outputs(stage) if not store.parquet_readable(p)]
    if damaged:
        log.warning(
            "run %s: %s cannot be read (damaged); running the %s stage again to rebuild it",
            run.run_id,
            ", ".join(str(p) for p in damaged),
            stage,
        )
        run.paths.stage_result(stage).unlink(missing_ok=True)
        return None
    return result


def interrupted_runs(job: JobConfig, *, taken_over_by: str) -> list[history.RunRecord]:
    """This job's runs whose process died mid-run, oldest first, now marked `interrupted`.

    Only the holder of the job's lock may ask, so a run the history still calls `running` has no
    live process. Backfill days are left out: `aigw-feedback backfill` resumes its own days.
    """
    dead = history.mark_interrupted(
        job.store.data_dir,
        job.name,
        job.gateway.gateway_id,
        taken_over_by=taken_over_by,
        now=datetime.now(UTC),
    )
    return [record for record in dead if record.mode != "backfill"]


def unfinished_run(job: JobConfig, mode: str, window: Window | None) -> history.RunRecord | None:
    """The latest run of this mode (and window), if it should be finished before a new one.

    A run stopped by a cap or a signal is always continued (it makes progress every night).
    One that failed, crashed or ended with failed/unverified changes gets one automatic retry,
    so a run that keeps failing cannot hold up every night after it.
    """
    last = history.list_runs(
        job.store.data_dir,
        job=job.name,
        gateway_id=job.gateway.gateway_id,
        mode=mode,
        window=window,
        limit=1,
    )
    if not last or last[0].status not in history.UNFINISHED:
        return None
    record = last[0]
    if record.stopped or record.attempts < AUTO_RESUME_ATTEMPTS:
        return record
    log.warning(
        "run %s is still %s after %d attempts; it is not resumed automatically any more "
        "(finish it with: aigw-feedback run %s --run %s)",
        record.run_id,
        record.status,
        record.attempts,
        job.path,
        record.run_id,
    )
    return None
