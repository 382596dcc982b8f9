"""Extract: every log with created_at in a window, exactly once, into Hive-partitioned Parquet.

    result = await extract(job, window, client=client, run=run)
    print(result.summary())
    sys.exit(result.exit_code)

The Logs API pages by page number only, has no cursor, offers only `gt`/`lt` on created_at (ms,
not unique) and `eq`/`neq` on id, and logs arrive and vanish while one pages. The extract goes in
two steps:

1. **Pass** (``paging``): page 1 of ``[cursor, hi)`` minus the cursor millisecond's logs already
   read (``id neq``), again and again; crowded milliseconds cut by duration; up to
   ``budget.concurrency`` stretches of the window walked side by side (``ranges``). Every log in
   the window from the extract's start to its end is held once, whatever comes and goes; quiet,
   it costs the minimum, one request per 50 logs.
2. **Reconcile** (``reconcile``): one count of the window; where it differs from what is held
   (logs arrived or vanished behind the pass's cursor), counts bisect down to the ranges that
   changed and only those are read again. Its cost is bounded (40% of the pass, at least 16
   requests); past that the result says which ranges are unsettled (``complete=False``, exit 1,
   a note) instead of pretending; extracting again settles them.

The result counts what changed: the window's count at the start and at the end, logs that
arrived or vanished behind the cursor (found by reconcile), and count changes seen ahead of it.

The logs are held by id (``held``) and streamed into per-day staging files that then replace
their partitions, one rename each (``staging``); ``rows`` turns API entries into LOG_SCHEMA rows.
Only ``staging`` loads pyarrow, with the first log held: the first requests do not wait for it.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Self

from pipeline.config import JobConfig
from pipeline.extract.held import Held
from pipeline.extract.paging import Pager
from pipeline.extract.reconcile import Settled, extra_bound, reconcile
from pipeline.extract.rows import at_ms, ceil_ms
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
    count_at_start: int | None = None  # the API's count of the window when the pass began
    arrived: int = 0  # logs that arrived where the pass had read already, found and held
    vanished: int = 0  # logs the pass read that were gone when counted again, left out
    changes_ahead: int = 0  # count changes seen ahead of the pass's cursor (arrived or vanished)
    unsettled_ranges: tuple[tuple[str, str, int, int], ...] = ()  # start, end, API count, held
    unverified_ms: int = 0  # crowded milliseconds a part of which never paged with a steady count
    pass_requests: int = 0  # the pass alone: the quiet minimum, about one request per 50 logs
    extra_requests: int = 0  # reconcile's counts and re-reads
    extra_bound: int = 0  # what reconcile may spend before it stops and says so
    timeline: list[list[int]] = field(default_factory=list)  # [epoch second, requests]

    @property
    def exit_code(self) -> int:
        """0: every log present throughout is held, once, and the API's counts agree with what
        is held (changes that cancel within one counted range cannot show: see reconcile);
        1: counts still differed when reconcile reached its bound, or a crowded millisecond never
        paged steadily (the note says where; extracting again settles it)."""
        return 0 if self.complete else 1

    def summary(self) -> str:
        """A few lines for a person: what was extracted, what it cost, where it went."""
        days = len(self.partitions)
        lines = [
            f"extract {self.window}: {self.logs:,} logs in {self.requests:,} requests "
            f"({self.seconds:.1f} s), {days} partition{'s' if days != 1 else ''}"
            + (f" ({self.partitions[0]})" if days == 1 else "")
        ]
        if self.arrived or self.vanished or self.changes_ahead:
            start = "" if self.count_at_start is None else f"{self.count_at_start:,} at the start, "
            lines.append(
                f"logs changed while extracting: {self.arrived:,} arrived and {self.vanished:,} "
                f"vanished where already read, counts moved by {self.changes_ahead:,} ahead; the "
                f"API counted {start}{self.total_count:,} at the end"
            )
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
            "count_at_start": self.count_at_start,
            "arrived": self.arrived,
            "vanished": self.vanished,
            "changes_ahead": self.changes_ahead,
            "unsettled_ranges": [
                {"start": a, "end": b, "api_count": api, "held": held}
                for a, b, api, held in self.unsettled_ranges
            ],
            "unverified_ms": self.unverified_ms,
            "pass_requests": self.pass_requests,
            "extra_requests": self.extra_requests,
            "extra_bound": self.extra_bound,
            "timeline": self.timeline,
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
            "unsettled_ranges": lambda us: tuple(
                (str(u["start"]), str(u["end"]), int(u["api_count"]), int(u["held"])) for u in us
            ),
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
    seconds_before = Counter(client.stats.per_second)
    data_dir, gateway_id = job.store.data_dir, job.gateway.gateway_id
    held = Held(logs_root(data_dir, gateway_id) / f".staging-{secrets.token_hex(4)}", clock)
    try:
        budget_per_s = client.budget.report().get("budget_per_s")
        with progress.task("extract", unit="logs", budget_per_s=budget_per_s) as task:
            pager = Pager(
                client,
                filters=[f.to_json() for f in job.extract.filters],
                per_page=job.extract.per_page,
                held=held,
                task=task,
                workers=job.budget.concurrency,
            )
            lo, hi = ceil_ms(window.start), ceil_ms(window.end)
            scan = await pager.scan(lo, hi, held.add)
            bound = extra_bound(scan.requests)
            if scan.requests == 1:  # one answer held the whole window: a snapshot, nothing to check
                settled = Settled(complete=True, total=scan.first_total)
            else:
                settled = await reconcile(pager, lo, hi, bound=bound)
        partitions = held.staging.swap_in(held.dropped, window, data_dir, gateway_id)
    finally:
        held.discard()
    logs = len(held)
    complete = settled.complete and not scan.unverified
    unsettled = tuple(
        (iso_ms(at_ms(a)), iso_ms(at_ms(b)), api, n) for a, b, api, n in settled.unsettled
    )
    note = "" if complete else _note(settled, scan.unverified, logs, bound)
    result = ExtractResult(
        window=window,
        logs=logs,
        requests=client.stats.requests - requests_before,
        partitions=tuple(str(p.relative_to(data_dir)) for p in partitions),
        days=tuple(window.days()),
        seconds=round(clock() - started, 3),
        total_count=settled.total,
        complete=complete,
        note=note,
        reconcile_rounds=settled.rounds,
        ranges=scan.ranges,
        count_at_start=scan.first_total,
        arrived=settled.arrived,
        vanished=settled.vanished,
        changes_ahead=scan.changes_ahead,
        unsettled_ranges=unsettled,
        unverified_ms=scan.unverified,
        pass_requests=scan.requests,
        extra_requests=pager.requests - scan.requests,
        extra_bound=bound,
        timeline=client.stats.timeline_since(seconds_before),
    )
    if run is not None:
        write_json_atomic(result.to_json(), run.paths.stage_result("extract"))
    return result


def _note(settled: Settled, unverified: int, logs: int, bound: int) -> str:
    """What is unsettled, what still holds, and how to finish."""
    parts = []
    if settled.unsettled:
        spans = ", ".join(
            f"{iso_ms(at_ms(a))}..{iso_ms(at_ms(b))}"
            + (f" (API {api:,}, held {n:,})" if api >= 0 else f" (held {n:,})")
            for a, b, api, n in settled.unsettled[:3]
        )
        more = len(settled.unsettled) - 3
        parts.append(
            f"logs were still being added or deleted in the window after {bound:,} extra "
            f"requests, {settled.rounds} round{'s' if settled.rounds != 1 else ''} of checks "
            f"(the API last counted "
            f"{settled.total:,}; {logs:,} were extracted); unsettled: {spans}"
            + (f" and {more} more" if more > 0 else "")
        )
    elif not settled.complete:
        parts.append(
            f"logs were still being added or deleted in the window (the API last counted "
            f"{settled.total:,}; {logs:,} were extracted)"
        )
    if unverified:
        parts.append(
            f"{unverified} crowded millisecond{'s' if unverified != 1 else ''} never paged "
            "with a steady count"
        )
    return (
        "; ".join(parts)
        + ". Every log present from the extract's start to its end is in; extract again (the "
        "same command) to settle the rest"
    )
