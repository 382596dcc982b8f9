"""Backfill: a range of days, one resumable run per UTC day, in order, within a request cap.

    aigw-feedback backfill jobs/backfill.toml --from 2026-08-01 --to 2026-10-31 --max-requests 3000

Each day is an ordinary run (window = that UTC day, mode ``backfill``). Running the same command again
continues: a day whose latest run ended ``ok`` is skipped; a day whose run stopped (request cap, time
cap, failures, a crash) is resumed from where it stopped (its journal, so nothing is sent twice); days
not reached yet are started. A day planned by ``--dry-run`` is applied from that plan.

``max_requests`` (``--max-requests``, else ``budget.max_requests`` of the job file) caps the requests of
one invocation across all its days, so a backfill of months spreads over several nights within the
token's budget. When it is used up the invocation stops cleanly (exit 1) and says how far it got.

A backfill never moves the nightly watermark: it fills in the past, the watermark says where the
nightly job's own coverage ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from pipeline.config import JobConfig
from pipeline.errors import UsageError
from pipeline.progress import Progress
from pipeline.resume import open_job_run
from pipeline.run import Runner, Sleep, job_runner
from pipeline.run_result import RunResult
from pipeline.state import history
from pipeline.window import day_window, nightly_window

log = logging.getLogger(__name__)

MODE = "backfill"


@dataclass(frozen=True)
class DayOutcome:
    day: date
    status: str  # ok | partial | failed | dry_run | done_before | not_started | in_progress
    run_id: str | None = None
    requests: int = 0
    counts: dict[str, Any] | None = None
    stopped: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "status": self.status,
            "run_id": self.run_id,
            "requests": self.requests,
            "counts": self.counts or {},
            "stopped": self.stopped,
        }


@dataclass(frozen=True)
class BackfillResult:
    job: str
    gateway_id: str
    start: date
    end: date  # included
    days: tuple[DayOutcome, ...]
    stopped: str | None  # why this invocation stopped before the last day (the request cap)
    requests: int
    seconds: float
    dry_run: bool = False

    @property
    def verified(self) -> int:
        return sum(d.status in ("ok", "nothing_to_do", "done_before") for d in self.days)

    @property
    def exit_code(self) -> int:
        if self.dry_run:
            return 0 if self.stopped is None else 1
        return 0 if self.verified == len(self.days) else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "gateway_id": self.gateway_id,
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "days": [d.to_json() for d in self.days],
            "verified_days": self.verified,
            "stopped": self.stopped,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "dry_run": self.dry_run,
            "exit_code": self.exit_code,
        }

    def summary(self) -> str:
        lines = [
            f"backfill job {self.job} gateway {self.gateway_id} {self.start}..{self.end} "
            f"({len(self.days)} days)"
        ]
        for first, last, outcome in _collapse(self.days):
            span = f"{first}" if first == last else f"{first}..{last}"
            text = _DAY_TEXT.get(outcome.status, outcome.status)
            if outcome.run_id and first == last:
                text += f" run {outcome.run_id}"
                counts = outcome.counts or {}
                if counts:
                    text += (
                        f" ({counts.get('patched', counts.get('patch', 0)):,} patched, "
                        f"{counts.get('verified', 0):,} verified, {outcome.requests:,} requests)"
                    )
            lines.append(f"  {span:<22} {text}")
        lines.append(
            f"{self.verified} of {len(self.days)} days verified; {self.requests:,} requests in "
            f"{self.seconds:.0f} s."
        )
        if self.stopped:
            lines.append(
                f"Stopped: {self.stopped}. Run the same command again to continue "
                "(verified days are skipped, the stopped day resumes)."
            )
        elif self.exit_code:
            lines.append("Some days are not verified: run the same command again to retry them.")
        return "\n".join(lines)


_DAY_TEXT = {
    "ok": "ok",
    "nothing_to_do": "ok (nothing to do)",
    "done_before": "ok (verified before, skipped)",
    "partial": "partial",
    "failed": "failed",
    "dry_run": "planned (dry run)",
    "not_started": "not started",
    "in_progress": "loading already started (skipped by the dry run)",
}


def _collapse(days: tuple[DayOutcome, ...]) -> list[tuple[date, date, DayOutcome]]:
    """Consecutive days that were skipped or not started, as one line."""
    out: list[tuple[date, date, DayOutcome]] = []
    for day in days:
        quiet = day.status in ("done_before", "not_started")
        if out and quiet and out[-1][2].status == day.status:
            out[-1] = (out[-1][0], day.day, out[-1][2])
        else:
            out.append((day.day, day.day, day))
    return out


def backfill_days(start: date, end: date) -> list[date]:
    if end < start:
        raise UsageError(f"--to {end} is before --from {start}")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


async def backfill(
    job: JobConfig,
    *,
    start: date,
    end: date,
    max_requests: int | None = None,
    dry_run: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] | None = None,
    sleep: Sleep | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> BackfillResult:
    """Run the days start..end (both included) in order; see the module docstring.

    Raises LockHeldError (exit 4) if a run of this job and gateway is in progress, UsageError if the
    range is reversed or reaches into a day that is not complete yet (see ``[window] lag``).
    """
    now = now or datetime.now(UTC)
    days = backfill_days(start, end)
    last_complete = nightly_window(now, job.window.lag_seconds).start.date()
    if end > last_complete:
        raise UsageError(
            f"--to {end} is not a complete day yet (with the job's lag of "
            f"{job.window.lag_seconds:.0f} s the last complete UTC day is {last_complete}); "
            "the nightly job takes the days after that"
        )
    if max_requests is not None:
        job = job.with_overrides(max_requests=max_requests)
    t0 = time.monotonic()
    outcomes: list[DayOutcome] = []
    stopped: str | None = None
    async with job_runner(
        job, dry_run=dry_run, transport=transport, clock=clock, sleep=sleep, now=now,
        progress=progress,
    ) as runner:  # fmt: skip
        # Days whose process died are resumed in their turn below, like any unfinished day.
        await runner.finish_interrupted()
        for i, day in enumerate(days):
            if stopped is not None:
                outcomes += [DayOutcome(d, "not_started") for d in days[i:]]
                break
            outcome = await _one_day(runner, job, day)
            outcomes.append(outcome)
            stopped = outcome.stopped
        requests = runner.client.stats.requests
    result = BackfillResult(
        job=job.name,
        gateway_id=job.gateway.gateway_id,
        start=start,
        end=end,
        days=tuple(outcomes),
        stopped=stopped,
        requests=requests,
        seconds=time.monotonic() - t0,
        dry_run=dry_run,
    )
    log.info("backfill: %d of %d days verified", result.verified, len(days))
    return result


async def _one_day(runner: Runner, job: JobConfig, day: date) -> DayOutcome:
    """Skip a verified day, resume an unfinished one, or start it."""
    window = day_window(day)
    data_dir = job.store.data_dir
    latest = history.list_runs(
        data_dir, job=job.name, gateway_id=job.gateway.gateway_id, window=window, limit=1
    )
    record = latest[0] if latest else None
    if record is not None and record.status in history.SUCCEEDED:
        log.debug("%s: verified before by run %s, skipped", day, record.run_id)
        return DayOutcome(day, "done_before", record.run_id, counts=record.counts)
    if record is not None and runner.dry_run and record.status == "dry_run":
        return DayOutcome(day, "dry_run", record.run_id, counts=record.counts)
    if record is not None:
        run = open_job_run(job, record.run_id)
        if runner.dry_run and run.paths.stage_result("load").exists():
            return DayOutcome(day, "in_progress", record.run_id, counts=record.counts)
        log.info("%s: resuming run %s (%s)", day, record.run_id, record.status)
    else:
        run = runner.new_run(window)
    result: RunResult = await runner.execute(run, MODE)
    return DayOutcome(
        day,
        result.status,
        result.run_id,
        requests=result.requests,
        counts=result.counts,
        stopped=result.stopped,
    )


def day_runs(job: JobConfig, start: date, end: date) -> dict[date, history.RunRecord | None]:
    """The latest recorded run of each day of a range (for tests and tooling)."""
    out: dict[date, history.RunRecord | None] = {}
    for day in backfill_days(start, end):
        runs = history.list_runs(
            job.store.data_dir,
            job=job.name,
            gateway_id=job.gateway.gateway_id,
            window=day_window(day),
            limit=1,
        )
        out[day] = runs[0] if runs else None
    return out
