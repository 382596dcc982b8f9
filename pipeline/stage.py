"""One stage of a recorded run, by itself: what `aigw-feedback extract|label|plan|load|verify` do.

    outcome = asyncio.run(run_stage(job, "load", run_id="20261102T011500Z-nightly-3f2a"))
    print(outcome.summary())
    sys.exit(outcome.exit_code)

The stage functions (`extract`, `label`, `plan`, `load`, `verify`) do the work; `run_stage` is what a
stage needs around it when it runs alone, so the CLI does none of it and a Python caller (a notebook,
an orchestrator's task) gets the same behaviour:

- the run: `extract` without a run id starts a new run for the window (the job's [window] default
  unless told), and every stage given a run id opens that recorded run of the job;
- the job's run lock, the one `run` takes, noting the run it is held for: two writers of one run
  would PATCH logs twice, so a second one gets LockHeldError (exit 4) before it sends anything;
- the Logs API client with the job's budget, for the stages that talk to the API (label only when
  its external labeler fetches response heads), with SIGTERM and SIGINT stopping it gracefully;
- the load's progress, sized from the plan;
- the run's report, written after verify (the last stage, so the report is complete then);
- one outcome for every stage (`StageOutcome`): the stage's result, its run, its exit code.

`show_report` is the same for `aigw-feedback report`: a re-render of a run folder, and its exit code.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

import httpx

from pipeline.config import JobConfig
from pipeline.errors import UsageError
from pipeline.extract import ExtractResult, extract
from pipeline.gateway import open_client
from pipeline.gateway.budget import Sleep
from pipeline.gateway.client import LogsClient
from pipeline.progress import Progress
from pipeline.resume import open_job_run
from pipeline.signals import stop_on_signals
from pipeline.state import lock, store
from pipeline.state.store import RunInfo
from pipeline.window import Window, parse_window

# The stages after the extract and the report load polars, pyarrow and jinja2: each is imported
# where it runs, so `aigw-feedback extract` sends its first request without waiting for them.
# Start-up time, not a cycle: they import nothing from here.
if TYPE_CHECKING:
    from pipeline.label import LabelResult
    from pipeline.load import LoadResult
    from pipeline.plan import PlanResult
    from pipeline.verify import VerifyResult

__all__ = [
    "STAGES",
    "AnyStageResult",
    "ReportShown",
    "Stage",
    "StageOutcome",
    "run_stage",
    "show_report",
]

Stage = Literal["extract", "label", "plan", "load", "verify"]
STAGES: tuple[Stage, ...] = get_args(Stage)
AnyStageResult: TypeAlias = "ExtractResult | LabelResult | PlanResult | LoadResult | VerifyResult"
ReportFormat = Literal["md", "json", "html"]


@dataclass(frozen=True)
class StageOutcome:
    """What one stage command did: the stage's own result, and the run it belongs to."""

    stage: Stage
    run_id: str
    result: AnyStageResult
    job_path: Path  # the job file, for the command that comes next
    created: bool = False  # extract started this run (no run id was given)

    @property
    def exit_code(self) -> int:
        """The stage's own: 0 when it did everything it had to, 1 when it left some undone
        (extract: logs kept changing to the end; load: changes failed or pending; verify:
        mismatched or unverifiable). Errors have theirs (PipelineError.exit_code)."""
        return self.result.exit_code

    @property
    def next_command(self) -> str | None:
        """After an extract, the command for the next stage of its run."""
        if self.stage != "extract":
            return None
        return f"aigw-feedback label {shlex.quote(str(self.job_path))} --run {self.run_id}"

    def summary(self) -> str:
        lines = [self.result.summary()]
        if self.created:
            lines.append(f"run {self.run_id} created for this window")
        if self.next_command is not None:
            lines.append(f"next: {self.next_command}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """One object: stage, run_id, exit_code (after extract: created, next), then the result."""
        data: dict[str, Any] = {"stage": self.stage, "run_id": self.run_id}
        data["exit_code"] = self.exit_code
        if self.stage == "extract":
            data.update(created=self.created, next=self.next_command)
        return {**data, **self.result.to_json()}


async def run_stage(
    job: JobConfig,
    stage: Stage,
    *,
    run_id: str | None = None,
    window: Window | str | None = None,
    progress: Progress | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] | None = None,
    sleep: Sleep | None = None,
    now: datetime | None = None,
    on_run: Callable[[str], None] | None = None,
) -> StageOutcome:
    """Run one stage of a run of `job` (see the module docstring).

    ``run_id`` names the run; only `extract` may leave it out, to start a new run for ``window``
    (a Window or a window spec such as ``yesterday``, read at ``now``; default: the job's
    [window] default). ``on_run`` is told the run id as soon as it is known, before anything can
    fail for that run (the CLI names the run in its failure summary). ``transport``, ``clock`` and
    ``sleep`` go to the Logs API client (tests: an in-process emulator, no real waiting).

    Raises UsageError for a wrong combination, UnknownRunError, LockHeldError (exit 4) while
    another run of the job holds its lock, and whatever the stage itself raises.
    """
    opened = _the_run(job, stage, run_id, window, now)
    if isinstance(opened, RunInfo) and on_run is not None:
        on_run(opened.run_id)
    progress = progress or Progress(enabled=False)
    api = _Api(job, transport, clock, sleep)
    data_dir = job.store.data_dir
    with lock.run_lock(data_dir, job.name, job.gateway.gateway_id) as held:
        if isinstance(opened, Window):
            run = store.start_run(job, opened)
            if on_run is not None:
                on_run(run.run_id)
        else:
            run = opened
        lock.note_run(data_dir, held, run.run_id)
        result = await _stage(job, stage, run, progress, api)
    created = run is not opened
    return StageOutcome(stage, run.run_id, result, job_path=job.path, created=created)


def _the_run(
    job: JobConfig,
    stage: Stage,
    run_id: str | None,
    window: Window | str | None,
    now: datetime | None,
) -> RunInfo | Window:
    """The recorded run the stage works on, or (extract only) the window of a new run."""
    if stage not in STAGES:
        raise UsageError(f"no stage {stage!r}: one of {', '.join(STAGES)}")
    if stage != "extract":
        if run_id is None:
            raise UsageError(f"{stage} works on a recorded run: give its run id (see `runs`)")
        if window is not None:
            raise UsageError(f"{stage} works on its run's own window; leave out the window")
    if run_id is not None:
        if window is not None:
            raise UsageError("--run extracts the run's own window; leave out --window")
        return open_job_run(job, run_id)
    if isinstance(window, Window):
        return window
    spec = window or job.window.default
    moment = now or datetime.now(UTC)
    return parse_window(spec, now=moment, lag_seconds=job.window.lag_seconds)


@dataclass(frozen=True)
class _Api:
    """How to reach the Logs API: a client opened per stage, with graceful signals."""

    job: JobConfig
    transport: httpx.AsyncBaseTransport | None
    clock: Callable[[], float] | None
    sleep: Sleep | None

    @asynccontextmanager
    async def client(self) -> AsyncIterator[LogsClient]:
        opened = open_client(self.job, transport=self.transport, clock=self.clock, sleep=self.sleep)
        async with opened as client:
            with stop_on_signals(client.budget):  # SIGTERM: finish what is in flight, then stop
                yield client


async def _stage(
    job: JobConfig, stage: Stage, run: RunInfo, progress: Progress, api: _Api
) -> AnyStageResult:
    """The stage function itself, with the client it needs (if any)."""
    if stage == "extract":
        async with api.client() as client:
            return await extract(job, run.window, client=client, progress=progress, run=run)
    if stage == "label":
        from pipeline.label import label  # imported where it runs: see the top

        external = job.labels.external
        if not (external.enabled and external.fetch_heads):
            return await label(job, run)  # local data only: no client, no token needed
        async with api.client() as client:
            return await label(job, run, client=client)
    if stage == "plan":
        from pipeline.plan import plan  # imported where it runs: see the top

        async with api.client() as client:
            return await plan(job, run, client=client)
    if stage == "load":
        return await _load(job, run, progress, api)
    from pipeline.report import build_report  # imported where they run: see the top
    from pipeline.verify import verify

    async with api.client() as client:
        checked = await verify(job, run, client=client, sleep=api.sleep or asyncio.sleep)
    build_report(job, run)  # the run's last stage: its report is complete now
    return checked


async def _load(job: JobConfig, run: RunInfo, progress: Progress, api: _Api) -> LoadResult:
    from pipeline.load import load_with_progress  # imported where it runs: see the top

    async with api.client() as client:
        return await load_with_progress(job, run, client=client, progress=progress)


# ---------------------------------------------------------------------------------------------
# aigw-feedback report


@dataclass(frozen=True)
class ReportShown:
    """What `aigw-feedback report` prints, and its exit code: 0 when the run succeeded (every
    planned change applied and verified, nothing to do, or a dry run's plan), else 1 (the report
    says why)."""

    run_id: str
    text: str  # printed as is (it ends with its own newline)
    ok: bool
    paths: dict[str, Path]

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def summary(self) -> str:
        return self.text


def show_report(
    run_id: str,
    data_dir: Path,
    *,
    fmt: ReportFormat = "md",
    out: Path | None = None,
    inline: bool = False,
) -> ReportShown:
    """A run's report rendered again from its run folder, which is never written to.

    With ``out`` the three files are written there and their paths shown; with ``inline`` the
    chosen format itself (HTML too); else md and json themselves and, for html, the path of the
    run's report.html (UsageError when the run stopped before writing one)."""
    from pipeline.report import report  # imported where it runs: see the top

    result = report(run_id, data_dir, out=out)
    if out is not None:
        text = result.summary() + "\n"
    elif fmt == "html" and not inline:
        if "html" not in result.paths:
            raise UsageError(
                f"run {run_id} has no report.html (it stopped before writing one); "
                "show it with --out - or write it with --out DIR"
            )
        text = f"{result.paths['html']}\n"
    else:
        text = result.texts[fmt]
    return ReportShown(result.run_id, text, result.exit_code == 0, dict(result.paths))
