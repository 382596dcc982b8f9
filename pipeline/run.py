"""One run of a job: extract → label → plan → load → verify → report, with a run id, resumable.

Which window:
- ``--window SPEC``: exactly that window (a new run).
- ``--run RUN_ID``: the recorded run again, with its own window. Stages whose result is already in
  the run folder are skipped (extract, label, plan); load resumes from its journal (a ``done`` row is
  never sent again); verify and the report are always done again.
- neither (the nightly mode, when the job's ``[window] default`` is ``yesterday``): from the job's
  watermark — where its verified nightly coverage ends — up to the end of the nightly window, so
  nights that were missed are caught up in one run. With no watermark yet: just the nightly window.
  Other defaults (``last:24h``...) are taken as an explicit window.

What a run that does not end ``ok`` does (status ``partial``: a request or time cap stopped it, or some
changes failed or could not be verified; ``failed``: an error stopped it): the watermark stays where
it is, and the next nightly invocation first resumes that run (so the labels it planned, including
analysts' CSV labels, are finished from its journal), then starts a new run from the watermark. The
new run covers the unfinished window again; its plan compares labels with the logs' current state, so
what already landed is ``unchanged`` and costs no PATCH. A run stopped by a cap is resumed night after
night until it is done; one that failed or kept failed/unverified changes is retried automatically
once, then left for ``aigw-feedback run JOB --run RUN_ID``, so it cannot hold up the nights after it.
The first nightly run of a job records its window's start as the watermark, so even a first night
that does not end ``ok`` is covered again.

A dry run stops after the plan (status ``dry_run``): counts, the requests needed and the time at the
budget; nothing is written to the gateway. ``--run`` on a dry run's id continues it from the plan.

Only one run per job and gateway at a time (pipeline.state.lock). Every run is recorded in state.sqlite
(pipeline.state.history): id, window, mode, status, counts, times.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from pipeline.check import learned_by_run
from pipeline.config import JobConfig
from pipeline.errors import BudgetExhausted, UsageError
from pipeline.extract import ExtractResult, extract
from pipeline.gateway import open_client
from pipeline.gateway.client import LogsClient
from pipeline.logging_setup import redact
from pipeline.outcome import write_outcome
from pipeline.progress import Progress
from pipeline.result import JsonResult
from pipeline.resume import (
    forget_stale_plan,
    interrupted_runs,
    open_job_run,
    read_stage_result,
    unfinished_run,
)
from pipeline.run_result import BULKY_KEYS, STAGES, RunResult, Stages
from pipeline.signals import stop_on_signals
from pipeline.state import history, lock, recover, store
from pipeline.state.store import RunInfo
from pipeline.window import Window, nightly_window, parse_window

# The stages after the extract (label, plan, load, verify) and the report load polars, pyarrow and
# jinja2: each is imported where it runs, so that a run's first request (the extract's) does not
# wait for them. Start-up time, not a cycle: they import nothing from here.
if TYPE_CHECKING:
    from pipeline.load import LoadResult
    from pipeline.verify import VerifyResult

log = logging.getLogger(__name__)

NIGHTLY_SPEC = "yesterday"
PLANNING_STAGES = ("extract", "label", "plan")
WINDOW_MODES = ("nightly", "window")  # the modes whose success moves the nightly watermark
NO_EXTRACT_MODES = ("apply",)  # labels onto logs of any age: look-ups instead of a window's extract

Sleep = Callable[[float], Awaitable[None]]


# ---------------------------------------------------------------------------------------------
# Entry point


async def run_job(
    job: JobConfig,
    *,
    window: Window | None = None,
    run_id: str | None = None,
    dry_run: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] | None = None,
    sleep: Sleep | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """One invocation of `aigw-feedback run`. See the module docstring for which window it takes.

    ``now`` is the moment the invocation counts as happening (it decides the nightly window and the
    run id); ``clock`` and ``sleep`` drive the request budget and retries. Both default to real time.
    Raises LockHeldError (exit 4) if another run of this job and gateway is in progress.
    """
    if run_id is not None and window is not None:
        raise UsageError("--run continues a recorded run with its own window; leave out --window")
    now = now or datetime.now(UTC)
    if window is None and run_id is None and job.window.default.strip() != NIGHTLY_SPEC:
        window = parse_window(job.window.default, now=now, lag_seconds=job.window.lag_seconds)
    async with job_runner(
        job, dry_run=dry_run, transport=transport, clock=clock, sleep=sleep, now=now,
        progress=progress,
    ) as runner:  # fmt: skip
        return await runner.invoke(window=window, run_id=run_id)


@asynccontextmanager
async def job_runner(
    job: JobConfig,
    *,
    dry_run: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] | None = None,
    sleep: Sleep | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> AsyncIterator[Runner]:
    """What every invocation that runs a job's runs holds (run, backfill): the token registered
    with the redactor, the job's lock, one client (one budget) that signals stop gracefully, and
    the run history recovered from the run folders if the state database was set aside."""
    redact(job.gateway.token)
    job.gateway.require_token()
    with lock.run_lock(job.store.data_dir, job.name, job.gateway.gateway_id) as held:
        async with open_client(job, transport=transport, clock=clock, sleep=sleep) as client:
            with stop_on_signals(client.budget):
                recover.recover_runs(job.store.data_dir, now=datetime.now(UTC))
                yield Runner(
                    job, client, held, dry_run=dry_run, progress=progress, now=now, sleep=sleep
                )


def nightly_catch_up(job: JobConfig, now: datetime) -> Window:
    """From the watermark to the end of the nightly window (just the nightly window without one).

    A second nightly run on the same day (the watermark is already at the end) takes the nightly
    window again: new CSV files in the inbox get applied, and what is already labeled is
    ``unchanged`` in the plan, so it costs the extract and no PATCH.
    """
    nightly = nightly_window(now, job.window.lag_seconds)
    mark = history.get_watermark(job.store.data_dir, job.name, job.gateway.gateway_id)
    if mark is None or mark >= nightly.start:
        return nightly
    return Window(mark, nightly.end)


class Runner:
    """Runs the stages of one or more runs of a job over one client (one shared budget)."""

    def __init__(
        self,
        job: JobConfig,
        client: LogsClient,
        held: lock.LockHolder,
        *,
        dry_run: bool = False,
        progress: Progress | None = None,
        now: datetime | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self.job = job
        self.sleep = sleep
        self.client = client
        self.held = held
        self.dry_run = dry_run
        self.progress = progress
        self.now = now or datetime.now(UTC)

    @property
    def data_dir(self) -> Path:
        return self.job.store.data_dir

    def new_run(self, window: Window) -> RunInfo:
        return store.create_run(
            self.data_dir, self.job.name, self.job.gateway.gateway_id, window, now=self.now
        )

    async def invoke(self, *, window: Window | None, run_id: str | None) -> RunResult:
        """What `aigw-feedback run` asked for, after finishing the job's interrupted runs."""
        earlier = [] if self.dry_run else await self.finish_interrupted(skip=run_id)
        if earlier and earlier[-1].stopped:
            return _after(earlier[-1], earlier[:-1])  # the cap or a signal: nothing more now
        if run_id is not None:
            record = history.get_run(self.data_dir, run_id)
            run = open_job_run(self.job, run_id)
            result = await self.execute(run, mode=record.mode if record else "window")
        elif window is not None:
            result = await self.window(window, handled={r.run_id for r in earlier})
        else:
            result = await self.nightly(handled={r.run_id for r in earlier})
        return _after(result, earlier)

    async def apply(self) -> RunResult:
        """`aigw-feedback apply`: the job's interrupted runs first, then one run over the inbox
        that looks its logs up by id instead of extracting a window."""
        earlier = [] if self.dry_run else await self.finish_interrupted()
        if earlier and earlier[-1].stopped:
            return _after(earlier[-1], earlier[:-1])
        moment = Window(self.now, self.now + timedelta(milliseconds=1))
        return _after(await self.execute(self.new_run(moment), "apply"), earlier)

    async def finish_interrupted(self, skip: str | None = None) -> list[RunResult]:
        """Resume, oldest first, every run of this job whose process died mid-run.

        We hold the job's lock, so a run the history still calls `running` has no live process:
        it is marked `interrupted` (``runs`` shows when, and who took it over) and resumed under
        its own id, from its own folder and journal. So the labels it held, analysts' CSV rows
        included (they are in its folder and its manifest, not in the inbox any more), are
        written before anything new starts, and nothing it already wrote is sent again.
        Backfill days are left to `aigw-feedback backfill`, which resumes its own days.
        """
        dead = interrupted_runs(self.job, taken_over_by=f"pid {self.held.pid} on {self.held.host}")
        results: list[RunResult] = []
        for record in dead:
            if record.run_id == skip:
                continue
            log.warning(
                "run %s was interrupted (its process died while it was running); resuming it "
                "before anything else",
                record.run_id,
            )
            results.append(await self.execute(open_job_run(self.job, record.run_id), record.mode))
            if results[-1].stopped:
                break
        return results

    async def window(self, window: Window, handled: set[str] | None = None) -> RunResult:
        """Finish the last run of this very window if it did not end ok, then run it anew (new
        CSV files get applied; what already landed is `unchanged` and costs no PATCH)."""
        previous = await self._finish_unfinished("window", window, handled)
        if previous and previous[-1].stopped:
            return previous[-1]
        return _after(await self.execute(self.new_run(window), "window"), previous)

    async def nightly(self, handled: set[str] | None = None) -> RunResult:
        """Finish the last nightly run if it did not end ok, then run from the watermark."""
        previous = await self._finish_unfinished("nightly", None, handled)
        if previous and previous[-1].stopped:
            return previous[-1]  # the cap is used up: nothing left for a new window
        window = nightly_catch_up(self.job, self.now)
        if window.duration.days > 1:
            log.info("catching up %d days from the watermark: %s", window.duration.days, window)
        run = self.new_run(window)
        if not self.dry_run:
            history.start_watermark(
                self.data_dir,
                run.job,
                run.gateway_id,
                window.start,
                run_id=run.run_id,
                now=datetime.now(UTC),
            )
        return _after(await self.execute(run, "nightly"), previous)

    async def _finish_unfinished(
        self, mode: str, window: Window | None, handled: set[str] | None
    ) -> list[RunResult]:
        unfinished = None if self.dry_run else unfinished_run(self.job, mode, window)
        if unfinished is None or unfinished.run_id in (handled or set()):
            return []
        log.info("run %s ended %s: finishing it first", unfinished.run_id, unfinished.status)
        return [await self.execute(open_job_run(self.job, unfinished.run_id), mode)]

    async def execute(self, run: RunInfo, mode: str) -> RunResult:
        """The stages of one run, skipping those already complete. Records it in the runs table.

        However the attempt ends (done, a cap, a signal, an error), it leaves ``outcome.json``
        (the cause, requests and seconds over all attempts) and the report in the run folder, and
        its end in the history; an error is raised again for the CLI after that.
        """
        data_dir = self.data_dir
        if self.dry_run and run.paths.stage_result("load").exists():
            raise UsageError(
                f"run {run.run_id} has already started writing; a dry run cannot plan it again. "
                f"Continue it with: aigw-feedback run JOB --run {run.run_id}"
            )
        forget_stale_plan(run, data_dir)
        attempt = Attempt(
            run, mode, started=datetime.now(UTC), requests0=self.client.stats.requests
        )
        lock.note_run(data_dir, self.held, run.run_id)
        history.record_started(
            data_dir,
            run_id=run.run_id,
            job=run.job,
            gateway_id=run.gateway_id,
            window=run.window,
            mode=mode,
            started_at=attempt.started,
            created_at=run.created_at,
        )
        log.info(
            "run %s (%s): window %s",
            run.run_id,
            mode,
            run.window,
            extra={"stage": "run", "run_id": run.run_id, "mode": mode},
        )
        try:
            await self._stages(attempt)
        except BudgetExhausted as exc:
            # A cap or a signal outside the load (extract, plan lookups, verify): stop cleanly.
            attempt.stopped = str(exc)
        except BaseException as exc:
            attempt.error = exc
            self._close(attempt)
            raise
        return self._close(attempt)

    async def _stages(self, attempt: Attempt) -> None:
        run, stages = attempt.run, attempt.stages
        extracts = attempt.mode not in NO_EXTRACT_MODES
        for stage in PLANNING_STAGES:
            done = read_stage_result(run, stage)
            if done is not None:
                stages[stage] = done
                attempt.skipped.append(stage)
                continue
            stages[stage] = await self._stage(stage, run, extracts=extracts)
        if self.dry_run:
            return
        loaded = await self._load(run)
        stages["load"] = loaded
        if loaded.stopped_early:
            # The cap is used up (or a signal came): reading back now would only hit it again.
            attempt.stopped = loaded.stop_reason or "the request cap"
        elif self.job.verify.enabled:
            stages["verify"] = await self._verify(run)

    def _close(self, attempt: Attempt) -> RunResult:
        """outcome.json, the report and the history's record of how this attempt ended."""
        run, data_dir = attempt.run, self.data_dir
        requests = self.client.stats.requests - attempt.requests0
        extracted = attempt.stages.get("extract")
        learned = learned_by_run(
            self.job,
            self.client,
            window_logs=extracted.logs if isinstance(extracted, ExtractResult) else None,
            extracted=attempt.mode not in NO_EXTRACT_MODES and "extract" not in attempt.skipped,
        )
        for note in learned:
            log.warning("run %s: %s", run.run_id, note)
        seconds = (datetime.now(UTC) - attempt.started).total_seconds()
        outcome = write_outcome(
            run,
            mode=attempt.mode,
            started=attempt.started,
            error=attempt.error,
            stage=next((s for s in STAGES if s not in attempt.stages), None),
            stopped=attempt.stopped,
            budget=self.job.budget,
            dry_run=self.dry_run,
            requests=requests,
            seconds=seconds,
            learned=learned,
        )
        stages = attempt.typed()
        # The report judges the status; these are what stands if it cannot be written.
        status = "partial" if attempt.stopped and attempt.error is None else "failed"
        code, report = 1, None
        if self.dry_run and attempt.error is None and attempt.stopped is None:
            status, code = "dry_run", 0
        else:
            try:
                from pipeline.report import build_report, exit_code_for  # see the top

                built = build_report(self.job, run)
                status, code, report = built.status, exit_code_for(built), built.paths.get("html")
            except Exception as exc:  # the report must never hide what stopped the run
                log.error("run %s: the report could not be written: %s", run.run_id, exc)
        history.record_finished(
            data_dir,
            run.run_id,
            status=status,
            counts=stages.counts(),
            finished_at=datetime.now(UTC),
            error=outcome["error"]["message"] if outcome["error"] else None,
            stopped=attempt.stopped,
        )
        watermark = history.get_watermark(data_dir, run.job, run.gateway_id)
        if status in history.SUCCEEDED and attempt.mode in WINDOW_MODES:
            watermark = history.advance_watermark(
                data_dir,
                run.job,
                run.gateway_id,
                run.window,
                run_id=run.run_id,
                now=datetime.now(UTC),
                may_start=attempt.mode == "nightly",
            )
        log.info(
            "run %s: %s",
            run.run_id,
            status,
            extra={"stage": "run", "run_id": run.run_id, "status": status, "exit_code": code},
        )
        return RunResult(
            run_id=run.run_id,
            job=run.job,
            gateway_id=run.gateway_id,
            window=run.window,
            mode=attempt.mode,
            status=status,
            exit_code=code,
            stages=stages,
            skipped=tuple(attempt.skipped),
            stopped=attempt.stopped,
            watermark=watermark,
            report=report,
            requests=requests,
            seconds=seconds,
            counts=stages.counts(),
        )

    async def _stage(self, stage: str, run: RunInfo, *, extracts: bool = True) -> JsonResult:
        log.debug("%s: starting", stage)
        result: JsonResult
        if stage == "extract" and not extracts:
            result = no_extract(run)
        elif stage == "extract":
            result = await extract(
                self.job, run.window, client=self.client, progress=self.progress, run=run
            )
        elif stage == "label":
            from pipeline.label import label  # imported where it runs: see the top

            # A dry run reads the CSV inbox without consuming it: the files stay for a real run.
            result = await label(self.job, run, client=self.client, dry_run=self.dry_run)
        else:
            from pipeline.plan import plan  # imported where it runs: see the top

            result = await plan(self.job, run, client=self.client, use_extract=extracts)
        _log_stage(stage, result, run.run_id)
        return result

    async def _load(self, run: RunInfo) -> LoadResult:
        from pipeline.load import load_with_progress  # imported where it runs: see the top

        result = await load_with_progress(self.job, run, client=self.client, progress=self.progress)
        _log_stage("load", result, run.run_id)
        return result

    async def _verify(self, run: RunInfo) -> VerifyResult:
        from pipeline.verify import verify  # imported where it runs: see the top

        if self.sleep is None:
            result = await verify(self.job, run, client=self.client)
        else:
            result = await verify(self.job, run, client=self.client, sleep=self.sleep)
        _log_stage("verify", result, run.run_id)
        return result


def no_extract(run: RunInfo) -> ExtractResult:
    """The extract stage of an ``apply`` run: nothing listed (the plan looks the logs up by id),
    recorded like any stage so the label stage, resumes and the report read it as done."""
    result = ExtractResult(
        window=run.window,
        logs=0,
        requests=0,
        partitions=(),
        days=(),
        seconds=0.0,
        total_count=0,
        complete=True,
        note="apply: no window extracted; the labeled logs are looked up by id",
    )
    store.write_json_atomic(result.to_json(), run.paths.stage_result("extract"))
    return result


@dataclass
class Attempt:
    """One attempt at a run, while it goes: what it did so far and why it stopped."""

    run: RunInfo
    mode: str
    started: datetime
    requests0: int
    stages: dict[str, Any] = field(default_factory=dict)  # stage name -> its typed result
    skipped: list[str] = field(default_factory=list)
    stopped: str | None = None
    error: BaseException | None = None

    def typed(self) -> Stages:
        return Stages.of(self.stages)


def _after(result: RunResult, earlier: list[RunResult]) -> RunResult:
    """The invocation's result: ``result``, after the runs it finished first (the worst code)."""
    if not earlier:
        return result
    previous = tuple(earlier) + result.previous
    return replace(
        result, previous=previous, exit_code=max(r.exit_code for r in (result, *previous))
    )


def _log_stage(stage: str, result: JsonResult, run_id: str) -> None:
    data = result.to_json()
    counts = {k: v for k, v in data.items() if isinstance(v, int | float) and k not in BULKY_KEYS}
    for line in Stages.of({stage: result}).lines():
        log.info("%s", line, extra={"stage": stage, "run_id": run_id, "counts": counts})
