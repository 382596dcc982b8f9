"""Extract: every log with created_at in a window, exactly once, into Hive-partitioned Parquet.

    result = await extract(job, window, client=client, run=run)
    print(result.summary())
    sys.exit(result.exit_code)

The Logs API pages by page number only, has no cursor, offers only `gt`/`lt` on created_at (ms,
not unique), and logs arrive and disappear while one pages. So page numbers are never used across
a changing set, and the extract goes in three steps:

1. **Pass** (``paging``): page 1 of ``[cursor, hi)`` again and again, the cursor moving to the last
   millisecond of each answer, crowded milliseconds taken on their own, up to
   ``budget.concurrency`` stretches of the window walked side by side (``ranges``).
2. **Check** (``paging``): when the pass took more than one request, one more compares the
   window's count with the logs held.
3. **Reconcile** (``reconcile``), only when the pass saw logs come or go, or the check differs:
   the days that changed are paged again until quiet; after 5 rounds of changes the result says
   so (``complete=False``, a note) instead of pretending.

A quiet window costs the pass and one check; a changing one costs more, only where it changed.
Logs that stay are never lost and nothing is held twice; ``reconcile`` says which changes no count
can see, and why extracting again settles them.

The logs are held by id and streamed into per-day staging files that then replace their
partitions, one rename each (``staging``); ``rows`` turns API entries into LOG_SCHEMA rows.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Self

from pipeline.config import JobConfig
from pipeline.extract.paging import Pager
from pipeline.extract.reconcile import reconcile
from pipeline.extract.rows import ceil_ms
from pipeline.extract.staging import Held, Staging, swap_in
from pipeline.gateway.client import LogsClient
from pipeline.progress import Progress
from pipeline.result import StageResult
from pipeline.state.store import RunInfo, logs_root, write_json_atomic
from pipeline.timefmt import iso_ms, parse_iso
from pipeline.window import Window

__all__ = ["ExtractResult", "extract"]


@dataclass(frozen=True)
class ExtractResult(StageResult):
    window: Window
    logs: int
    requests: int
    partitions: tuple[str, ...]  # partition folders written, relative to the data dir
    days: tuple[date, ...]
    seconds: float  # to the millisecond, as written
    total_count: int  # what the API last said the window holds
    complete: bool
    note: str = ""
    reconcile_rounds: int = 0  # 0: one calm pass matched the API's count; nothing to check
    ranges: int = 1  # stretches of the window walked side by side (up to budget.concurrency)

    @property
    def exit_code(self) -> int:
        """0: the window is held as the API has it; 1: logs kept changing to the end (the note
        says so; extracting again settles it)."""
        return 0 if self.complete else 1

    def summary(self) -> str:
        """A few lines for a person: what was extracted, what it cost, where it went."""
        days = len(self.partitions)
        lines = [
            f"extract {self.window}: {self.logs:,} logs in {self.requests:,} requests "
            f"({self.seconds:.1f} s), {days} partition{'s' if days != 1 else ''}"
            + (f" ({self.partitions[0]})" if days == 1 else "")
        ]
        if not self.complete:
            lines.append(f"warning: {self.note}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "logs": self.logs,
            "requests": self.requests,
            "partitions": list(self.partitions),
            "days": [d.isoformat() for d in self.days],
            "window": {"start": iso_ms(self.window.start), "end": iso_ms(self.window.end)},
            "seconds": round(self.seconds, 3),
            "total_count": self.total_count,
            "complete": self.complete,
            "note": self.note,
            "reconcile_rounds": self.reconcile_rounds,
            "ranges": self.ranges,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        """The inverse of `to_json` (windows to the millisecond, as extract works). A key an
        older file lacks takes the field's default; a missing key without one is a TypeError,
        as for every stage result (``StageResult.read`` then gives None)."""
        convert: dict[str, Callable[[Any], Any]] = {
            "window": lambda w: Window(parse_iso(w["start"]), parse_iso(w["end"])),
            "partitions": lambda ps: tuple(str(p) for p in ps),
            "days": lambda ds: tuple(date.fromisoformat(d) for d in ds),
            "seconds": float,
        }
        known = {
            f.name: convert.get(f.name, lambda v: v)(data[f.name])
            for f in dataclasses.fields(cls)
            if f.name in data
        }
        return cls(**known)


async def extract(
    job: JobConfig,
    window: Window,
    *,
    client: LogsClient,
    progress: Progress | None = None,
    clock: Callable[[], float] | None = None,
    run: RunInfo | None = None,
) -> ExtractResult:
    """Extract every log with created_at in `window` into the job's data dir; see the module doc.

    With `run`, the result is also written to the run folder. Budget caps (BudgetExhausted) and
    API errors propagate; nothing is swapped in then, the partitions on disk stay as they were.
    """
    clock = clock or time.time
    progress = progress or Progress(enabled=False)
    started = clock()
    requests_before = client.stats.requests
    data_dir, gateway_id = job.store.data_dir, job.gateway.gateway_id
    staging = Staging(logs_root(data_dir, gateway_id) / f".staging-{secrets.token_hex(4)}")
    try:
        budget_per_s = client.budget.report().get("budget_per_s")
        with progress.task("extract", unit="logs", budget_per_s=budget_per_s) as task:
            held = Held(staging, clock)
            pager = Pager(
                client,
                filters=[f.to_json() for f in job.extract.filters],
                per_page=job.extract.per_page,
                held=held,
                task=task,
                workers=job.budget.concurrency,
            )
            lo, hi = ceil_ms(window.start), ceil_ms(window.end)
            _, complete, total = await pager.take(lo, hi, held.add, first=True)
            rounds = 0
            if not complete:
                complete, total, rounds = await reconcile(
                    pager, lo, hi, seen_changing=pager.seen_changing
                )
        staging.close()
        partitions = swap_in(staging, held.dropped, window, data_dir, gateway_id)
    finally:
        staging.discard()
    logs = len(held)
    note = ""
    if not complete:
        note = (
            f"logs were still being added or deleted in the window after {rounds} rounds of "
            f"checks (the API last counted {total:,}; {logs:,} were extracted); extract again "
            "to settle it"
        )
    result = ExtractResult(
        window=window,
        logs=logs,
        requests=client.stats.requests - requests_before,
        partitions=tuple(str(p.relative_to(data_dir)) for p in partitions),
        days=tuple(window.days()),
        seconds=round(clock() - started, 3),
        total_count=total,
        complete=complete,
        note=note,
        reconcile_rounds=rounds,
        ranges=pager.ranges,
    )
    if run is not None:
        write_json_atomic(result.to_json(), run.paths.stage_result("extract"))
    return result
