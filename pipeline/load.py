"""Load: execute the plan's PATCHes within the budget, journaled, resumable.

Only rows with action ``patch`` are sent, each with the body the plan fixed. A few workers
(``budget.concurrency``) share one client, and so one request budget:

- 429: the budget pauses every worker until Retry-After has passed and the client sends the request
  again: a 429 never fails a row or the run (it is counted as ``rate_limited``);
- 5xx and transport errors: the client retries with backoff; when its attempts are used up the row is
  ``failed`` with the reason, and a re-run of the same run tries it again;
- 404: the log no longer exists: ``gone``, never sent again;
- 403: stop at once and re-raise AuthError (exit 3): no other request would succeed either;
- BudgetExhausted (the run's ``max_requests`` / ``max_duration``): stop cleanly; the rest stays pending
  for the next invocation and the result says ``stopped_early``.

The journal (``pipeline.state.journal``) records each row before and after its PATCH, so a load killed at any
point resumes with the same command and never re-sends a ``done`` row. The result accumulates across
invocations of the same run (requests, seconds, the per-second timeline) and is checkpointed while
the load runs, so even a killed invocation's requests are counted.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from pipeline.config import JobConfig
from pipeline.errors import ApiError, AuthError, BudgetExhausted, NotFoundError
from pipeline.gateway.client import LogsClient
from pipeline.progress import Progress
from pipeline.result import StageResult
from pipeline.state import store
from pipeline.state.journal import Journal
from pipeline.state.store import RunInfo
from pipeline.timefmt import iso

MAX_LISTED_FAILURES = 500
CHECKPOINT_SECONDS = 5.0
PROGRESS_SECONDS = 1.0


@dataclass(frozen=True)
class LoadProgress:
    """A snapshot for a progress bar or a periodic log line."""

    done: int  # rows finished (done, failed or gone), over the whole run
    total: int
    sent_now: int
    elapsed: float
    rate: float  # PATCH calls per second in this invocation
    budget_per_s: float
    rate_limited: int
    failed: int

    @property
    def eta_seconds(self) -> float | None:
        remaining = self.total - self.done
        if remaining <= 0:
            return 0.0
        return remaining / self.rate if self.rate > 0 else None


ProgressCallback = Callable[[LoadProgress], None]


@dataclass(frozen=True)
class LoadResult(StageResult):
    run_id: str
    total: int  # planned patches
    patched: int  # done, over every invocation of this run
    failed: int
    gone: int
    pending: int  # not yet acknowledged (pending, or sent when a process died)
    requests: int  # HTTP requests, every invocation, retries and 429s included
    rate_limited: int
    retries: int
    seconds: float
    budget_per_s: float
    stopped_early: bool
    stop_reason: str | None
    patched_now: int  # this invocation
    skipped_done: int  # already done when this invocation started: not sent again
    invocations: int
    started_at: str
    finished_at: str
    failures: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[list[int]] = field(default_factory=list)  # [epoch second, PATCH calls]
    rate_limited_by: dict[str, int] = field(default_factory=dict)  # 429s by limiter code

    @property
    def exit_code(self) -> int:
        """0 when every planned change is applied (or gone), 1 when some failed or wait."""
        return 0 if not self.failed and not self.pending else 1

    @property
    def complete(self) -> bool:
        return self.patched + self.gone == self.total

    def summary(self) -> str:
        text = (
            f"load {self.run_id}: {self.patched}/{self.total} patched, {self.failed} failed, "
            f"{self.gone} gone, {self.pending} pending; {self.requests} requests "
            f"({self.rate_limited} rate-limited, {self.retries} retries) in {self.seconds:.1f} s"
        )
        if self.stopped_early:
            text += f"; stopped early: {self.stop_reason} (run the same command again to continue)"
        return text


@dataclass
class _Tally:
    """What this invocation did so far."""

    sent: int = 0
    done: int = 0
    failed: int = 0
    gone: int = 0
    per_second: Counter[int] = field(default_factory=Counter)


def read_patches(run: RunInfo) -> pl.DataFrame:
    """The plan's patch rows: log_id, body, body_hash, source."""
    path = store.require(run.paths.plan, "plan", run.run_id)
    return (
        pl.read_parquet(path, columns=["log_id", "action", "body", "body_hash", "source"])
        .filter(pl.col("action") == "patch")
        .select("log_id", "body", "body_hash", "source")
    )


def read_unchanged(run: RunInfo) -> pl.DataFrame:
    """The plan's labels that are already on their logs: log_id, source."""
    return (
        pl.read_parquet(run.paths.plan, columns=["log_id", "action", "source"])
        .filter((pl.col("action") == "unchanged") & pl.col("source").is_not_null())
        .select("log_id", "source")
    )


async def load(
    job: JobConfig,
    run: RunInfo,
    *,
    client: LogsClient,
    progress: ProgressCallback | None = None,
    clock: Callable[[], float] = time.time,
) -> LoadResult:
    """Send the plan's PATCHes for a run; resumable. Writes ``load.result.json``."""
    patches = read_patches(run)
    bodies = dict(zip(patches["log_id"].to_list(), patches["body"].to_list(), strict=True))
    sources = dict(zip(patches["log_id"].to_list(), patches["source"].to_list(), strict=True))
    previous = _previous(run)
    started = clock()
    stats0 = (client.stats.requests, client.stats.rate_limited, client.stats.retries)
    limiters0 = Counter(client.stats.rate_limited_by)
    tally = _Tally()
    stop_reason: str | None = None
    last_progress = last_checkpoint = started

    with Journal.open(
        job.store.data_dir, run.run_id, clock=clock, gateway_id=run.gateway_id
    ) as journal:
        journal.sync(zip(patches["log_id"].to_list(), patches["body_hash"].to_list(), strict=True))
        journal.claim(read_unchanged(run).iter_rows())
        queue = journal.to_send()
        skipped_done = journal.counts()["done"]
        cursor = iter(queue)
        stopping = asyncio.Event()

        def result() -> LoadResult:
            return _result(
                run, journal, previous, tally, client, stats0, started, clock(),
                total=patches.height, budget_per_s=job.budget.rate_per_second,
                stop_reason=stop_reason, skipped_done=skipped_done, limiters0=limiters0,
            )  # fmt: skip

        def finished_one(now: float) -> None:
            nonlocal last_progress, last_checkpoint
            tally.per_second[int(now)] += 1
            if progress is not None and now - last_progress >= PROGRESS_SECONDS:
                last_progress = now
                progress(_snapshot(journal, tally, client, stats0, started, now, job, patches))
            if now - last_checkpoint >= CHECKPOINT_SECONDS:
                last_checkpoint = now
                store.write_json_atomic(result().to_json(), run.paths.stage_result("load"))

        async def send(log_id: str) -> None:
            nonlocal stop_reason
            journal.mark_sent(log_id)
            tally.sent += 1
            try:
                await client.patch_log(log_id, json.loads(bodies[log_id]))
            except BudgetExhausted as exc:
                journal.mark_pending(log_id)
                tally.sent -= 1
                stop_reason = stop_reason or str(exc)
                stopping.set()
                return
            except AuthError:
                journal.mark_pending(log_id)
                raise
            except NotFoundError as exc:
                journal.mark_gone(log_id, str(exc), exc.status or 404)
                tally.gone += 1
            except ApiError as exc:
                # Retries used up (5xx, transport) or a 400 the API will keep refusing.
                journal.mark_failed(log_id, str(exc), exc.status)
                tally.failed += 1
            else:
                journal.mark_done(log_id, source=sources[log_id])
                tally.done += 1
            finished_one(clock())

        async def worker() -> None:
            for log_id in cursor:
                if stopping.is_set():
                    return
                await send(log_id)

        workers = [asyncio.create_task(worker()) for _ in range(job.budget.concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            # On a 403 (or any error, or cancellation) stop the other workers mid-flight: their
            # rows stay `sent` and the next run sends them again.
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            final = result()
            store.write_json_atomic(final.to_json(), run.paths.stage_result("load"))
        if progress is not None:
            progress(_snapshot(journal, tally, client, stats0, started, clock(), job, patches))
        return final


def _previous(run: RunInfo) -> dict[str, Any]:
    """The result of earlier invocations of this run's load (or a checkpoint of a killed one)."""
    path = run.paths.stage_result("load")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("run_id") == run.run_id else {}


def _snapshot(
    journal: Journal,
    tally: _Tally,
    client: LogsClient,
    stats0: tuple[int, int, int],
    started: float,
    now: float,
    job: JobConfig,
    patches: pl.DataFrame,
) -> LoadProgress:
    counts = journal.counts()
    elapsed = max(now - started, 1e-9)
    finished = tally.done + tally.failed + tally.gone
    return LoadProgress(
        done=counts["done"] + counts["failed"] + counts["gone"],
        total=patches.height,
        sent_now=tally.sent,
        elapsed=elapsed,
        rate=finished / elapsed,
        budget_per_s=job.budget.rate_per_second,
        rate_limited=client.stats.rate_limited - stats0[1],
        failed=counts["failed"],
    )


def _result(
    run: RunInfo,
    journal: Journal,
    previous: dict[str, Any],
    tally: _Tally,
    client: LogsClient,
    stats0: tuple[int, int, int],
    started: float,
    now: float,
    *,
    total: int,
    budget_per_s: float,
    stop_reason: str | None,
    skipped_done: int,
    limiters0: Counter[str],
) -> LoadResult:
    counts = journal.counts()
    failures = [
        {
            "log_id": r.log_id,
            "status": r.status,
            "http_status": r.http_status,
            "attempts": r.attempts,
            "error": r.error,
        }
        for r in journal.rows(("failed", "gone"))[:MAX_LISTED_FAILURES]
    ]
    timeline: Counter[int] = Counter({int(sec): int(n) for sec, n in previous.get("timeline", [])})
    timeline.update(tally.per_second)

    def prev(key: str) -> int:
        value = previous.get(key, 0)
        return int(value) if isinstance(value, int | float) else 0

    seconds = float(previous.get("seconds", 0.0) or 0.0) + (now - started)
    pending = counts["pending"] + counts["sent"]
    return LoadResult(
        run_id=run.run_id,
        total=total,
        patched=counts["done"],
        failed=counts["failed"],
        gone=counts["gone"],
        pending=pending,
        requests=prev("requests") + client.stats.requests - stats0[0],
        rate_limited=prev("rate_limited") + client.stats.rate_limited - stats0[1],
        retries=prev("retries") + client.stats.retries - stats0[2],
        seconds=round(seconds, 3),
        budget_per_s=budget_per_s,
        stopped_early=stop_reason is not None and pending > 0,
        stop_reason=stop_reason,
        patched_now=tally.done,
        skipped_done=skipped_done,
        invocations=prev("invocations") + 1,
        started_at=str(previous.get("started_at") or iso(started)),
        finished_at=iso(now),
        failures=failures,
        timeline=[[sec, n] for sec, n in sorted(timeline.items())],
        rate_limited_by=dict(
            sorted(
                (
                    Counter(previous.get("rate_limited_by") or {})
                    + (client.stats.rate_limited_by - limiters0)
                ).items()
            )
        ),
    )


async def load_with_progress(
    job: JobConfig, run: RunInfo, *, client: LogsClient, progress: Progress | None
) -> LoadResult:
    """`load`, shown as a progress task counted in planned changes (and requests sent)."""
    progress = progress or Progress(enabled=False)
    total = read_patches(run).height
    rate = job.budget.rate_per_second
    with progress.task("load", total=total, unit="changes", budget_per_s=rate) as task:
        seen = [0, 0]

        def advance(snapshot: LoadProgress) -> None:
            task.advance(snapshot.done - seen[0], requests=snapshot.sent_now - seen[1])
            seen[:] = [snapshot.done, snapshot.sent_now]

        return await load(job, run, client=client, progress=advance)
