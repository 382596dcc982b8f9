"""Extract: every log with created_at in a window, exactly once, into Hive-partitioned Parquet.

The Logs API pages by page number only, has no cursor, offers only `gt`/`lt` on created_at (ms,
not unique), and logs arrive and disappear while one pages. Page numbers are therefore never used
across a changing set:

1. **Pass.** Ask for page 1 of ``[cursor, hi)`` ascending (``created_at gt cursor-1ms``, ``lt hi``),
   starting at the window's start. Each answer is a snapshot of the first 50 logs from the cursor,
   so a log that stays in the window cannot be skipped whatever is inserted or deleted meanwhile.
   The cursor moves to the last millisecond of the answer, which is fetched again: other logs may
   share it (about 2% more requests than pure page numbers, the price of not losing any). A page
   that is all one millisecond (thousands of logs can share one) is taken on its own, by
   ``id gt <last id>`` when the API orders ties by id, else by page numbers checked against the
   count. Each answer's total_count is compared with what the previous one implies: a difference
   means logs came or went ahead of the cursor. Up to ``budget.concurrency`` stretches of the
   window are walked side by side (API latency, not the budget, would limit one walker): while a
   stretch has more than 20 pages left, an idle worker takes the later half of its time span.
2. **Check.** Changes behind the cursor cannot show in the pass, so when it took more than one
   request, one more compares the window's total_count with the logs held.
3. **Reconcile**, only when the pass saw logs come or go, or the check differs. Where the window is
   known to have changed it is paged again, one UTC day at a time, until a day's new paging is
   quiet (no change seen, its count checked); that paging replaces what was held for the day. Which days: every day when
   the pass saw changes (or the window is small, up to 8 pages); otherwise one count per range of
   8 pages' worth of logs finds the days that differ. After 5 rounds with logs still changing,
   the result says so (``complete=False`` and a note) instead of pretending.

A quiet window costs the pass and one check; a changing one costs more, only where it changed.
What counts cannot see: as many logs added behind the cursor as deleted, all within one checked
range, with no change visible to the pass. Logs that stay are never lost, nothing is held twice,
and extracting again settles such a window.

Logs are de-duplicated by id and streamed into per-day staging files (row groups), so memory stays
bounded; the staged days then replace their partitions, each with one rename. A day the window only
partly covers keeps the rows of that day outside the window that are already on disk.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.config import JobConfig
from pipeline.errors import ApiError, BadRequestError
from pipeline.gateway.client import LogEntry, LogPage, LogsClient
from pipeline.progress import Progress, Task
from pipeline.schemas import LOG_SCHEMA
from pipeline.store import RunInfo, logs_root, partition_dir, replace_partition, write_json_atomic
from pipeline.timefmt import iso_ms
from pipeline.window import Window

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
DAY_MS = 86_400_000
ROW_GROUP_ROWS = 65_536
BATCH_ROWS = 2_048
RECONCILE_ROUNDS = 5
TIE_ATTEMPTS = 5
RELIST_PAGES = 8  # reconcile checks ranges of this many pages' worth of logs
SPLIT_PAGES = 20  # a range with more pages than this left is shared with an idle worker

_INT_FIELDS = ("status_code", "step", "duration", "tokens_in", "tokens_out", "feedback")
_FLOAT_FIELDS = ("cost", "score")
_BOOL_FIELDS = ("success", "cached", "custom_cost")
_STR_FIELDS = (
    "id",
    "provider",
    "model",
    "model_type",
    "path",
    "request_type",
    "metadata",
    "request_content_type",
    "response_content_type",
)
_KNOWN = {f.name for f in LOG_SCHEMA} - {"extra", "extracted_at"}


@dataclass(frozen=True)
class ExtractResult:
    window: Window
    logs: int
    requests: int
    partitions: tuple[str, ...]  # partition folders written, relative to the data dir
    days: tuple[date, ...]
    seconds: float
    total_count: int  # what the API last said the window holds
    complete: bool
    note: str = ""
    reconcile_rounds: int = 0  # 0: one calm pass matched the API's count; nothing to check
    ranges: int = 1  # stretches of the window walked side by side (up to budget.concurrency)

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
            "window": {
                "start": _iso_ms(_ms(self.window.start)),
                "end": _iso_ms(_ms(self.window.end)),
            },
            "seconds": round(self.seconds, 3),
            "total_count": self.total_count,
            "complete": self.complete,
            "note": self.note,
            "reconcile_rounds": self.reconcile_rounds,
            "ranges": self.ranges,
        }


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
    staging = _Staging(logs_root(data_dir, gateway_id) / f".staging-{secrets.token_hex(4)}")
    try:
        budget_per_s = client.budget.report().get("budget_per_s")
        with progress.task("extract", unit="logs", budget_per_s=budget_per_s) as task:
            held = _Held(staging, clock)
            pager = _Pager(
                client,
                filters=[f.to_json() for f in job.extract.filters],
                per_page=job.extract.per_page,
                held=held,
                task=task,
                workers=job.budget.concurrency,
            )
            lo, hi = _ceil_ms(window.start), _ceil_ms(window.end)
            _, complete, total = await pager.take(lo, hi, held.add, first=True)
            rounds = 0
            if not complete:
                complete, total, rounds = await pager.reconcile(
                    lo, hi, seen_changing=pager.seen_changing
                )
        staging.close()
        partitions = _swap_in(staging, held.dropped, window, data_dir, gateway_id)
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
        seconds=clock() - started,
        total_count=total,
        complete=complete,
        note=note,
        reconcile_rounds=rounds,
        ranges=pager.ranges,
    )
    if run is not None:
        write_json_atomic(result.to_json(), run.paths.stage_result("extract"))
    return result


# ---------------------------------------------------------------------------------------------
# Paging


@dataclass
class _Scan:
    first_total: int = 0
    requests: int = 0
    ranges: int = 1
    changed: bool = False  # an answer showed that logs ahead of the cursor came or went


Sink = Callable[[list[LogEntry], list[int]], int]


@dataclass(eq=False)
class _Range:
    """One stretch of the window being walked: [cursor, hi) is what is left of it."""

    cursor: int
    hi: int
    expect: int | None = None  # what the next answer should count if nothing changes
    pair: _Pair | None = None  # just split: the next answers of both halves are checked together
    done: bool = False


@dataclass(eq=False)
class _Pair:
    """After a split, the first answers of the two halves must add up to the whole's count."""

    expect: int
    counts: dict[int, int] = field(default_factory=dict)

    def settle(self, half: _Range, total: int) -> bool:
        """Record one half's count; True once both are in and they do not add up."""
        self.counts[id(half)] = total
        return len(self.counts) == 2 and sum(self.counts.values()) != self.expect


@dataclass(eq=False)
class _Walk:
    """The ranges of one scan, and the idle workers waiting for a share of one."""

    ranges: list[_Range]
    threshold: int  # split only ranges with more logs than this left
    idle: int = 0
    offers: list[_Range] = field(default_factory=list)
    wake: asyncio.Condition = field(default_factory=asyncio.Condition)

    def finished(self) -> bool:
        return all(r.done for r in self.ranges)

    def low_water(self) -> int:
        """No walker will add logs before this millisecond any more (only reconcile may)."""
        return min((r.cursor for r in self.ranges if not r.done), default=2**62)

    async def maybe_split(self, r: _Range) -> None:
        """Hand the later half of `r` to an idle worker, if one waits and `r` is big enough."""
        if not self.idle or self.offers or r.expect is None or r.expect <= self.threshold:
            return
        middle = (r.cursor + r.hi) // 2
        if not r.cursor < middle < r.hi:
            return
        half = _Range(middle, r.hi)
        r.hi = middle
        r.pair = half.pair = _Pair(r.expect)
        r.expect = None
        self.ranges.append(half)
        async with self.wake:
            self.offers.append(half)
            self.wake.notify_all()


class _Pager:
    def __init__(
        self,
        client: LogsClient,
        *,
        filters: list[dict[str, Any]],
        per_page: int,
        held: _Held,
        task: Task,
        workers: int = 1,
    ) -> None:
        self.client = client
        self.filters = filters
        self.per_page = per_page
        self.workers = max(1, workers)
        self.ranges = 0  # walked by the first pass
        self.seen_changing = False  # some answer showed logs coming or going
        self.held = held
        self.task = task

    async def fetch(
        self, lo: int, hi: int, page: int = 1, *, after_id: str | None = None
    ) -> tuple[LogPage, list[int]]:
        """Page `page` of the logs with lo <= created_at < hi (ms), ascending; and their ms."""
        filters = [
            {"key": "created_at", "operator": "gt", "value": [_iso_ms(lo - 1)]},
            {"key": "created_at", "operator": "lt", "value": [_iso_ms(hi)]},
        ]
        if after_id is not None:
            filters.append({"key": "id", "operator": "gt", "value": [after_id]})
        result = await self.client.list_logs(
            filters=[*filters, *self.filters],
            page=page,
            per_page=self.per_page,
            order_by="created_at",
            direction="asc",
        )
        stamps = [_entry_ms(e) for e in result.entries]
        if any(b < a for a, b in itertools.pairwise(stamps)):
            raise ApiError("the Logs API did not return logs in created_at order (asked: asc)")
        return result, stamps

    async def take(
        self, lo: int, hi: int, sink: Sink, *, first: bool = False
    ) -> tuple[set[str], bool, int]:
        """Page [lo, hi) once, then check it: (ids seen, nothing was seen changing, API total).

        One answer is a snapshot by itself; after several, one more request compares the API's
        count (and, when it fits in one page, the ids) with what was seen. `first`: the window's
        first paging, where everything held was seen now (no second set of a million ids).
        """
        seen: set[str] = set()
        added = 0

        def collect(entries: list[LogEntry], stamps: list[int]) -> int:
            nonlocal added
            if not first:
                seen.update(e["id"] for e in entries)
            new = sink(entries, stamps)
            added += new
            return new

        scan = await self.scan(lo, hi, collect)
        self.ranges = self.ranges or scan.ranges
        self.seen_changing |= scan.changed
        if scan.changed:
            return seen, False, scan.first_total
        if scan.requests == 1:
            return seen, True, scan.first_total
        result, stamps = await self.fetch(lo, hi)
        self._sink(collect, result.entries, stamps, lo, hi)
        total = result.total_count
        count = added if first else len(seen)
        if total != count:
            return seen, False, total
        if total <= len(result.entries):  # the whole range in this answer: compare the ids too
            ids = {e["id"] for e in result.entries}
            return seen, ids == (set(self.held.ms_of) if first else seen), total
        return seen, True, total

    async def scan(self, lo: int, hi: int, sink: Sink) -> _Scan:
        """Hand every log of [lo, hi) to `sink` (some twice), up to `workers` ranges at once.

        One range starts. While a range still holds more than SPLIT_PAGES pages and a worker is
        idle, the range's walker hands the later half of its time span to that worker, right after
        an answer (so both halves start from a known count). Each range is walked by `_walk`.
        """
        out = _Scan()
        walk = _Walk(ranges=[_Range(lo, hi)], threshold=SPLIT_PAGES * self.per_page)

        async def worker(first: _Range | None) -> None:
            job = first
            while True:
                if job is None:
                    async with walk.wake:
                        walk.idle += 1
                        walk.wake.notify_all()
                        await walk.wake.wait_for(lambda: bool(walk.offers) or walk.finished())
                        walk.idle -= 1
                        if not walk.offers:
                            return
                        job = walk.offers.pop()
                try:
                    await self._walk(job, lo, hi, sink, out, walk)
                finally:
                    job.done = True
                    async with walk.wake:
                        walk.wake.notify_all()
                job = None

        await asyncio.gather(
            *(worker(walk.ranges[0] if i == 0 else None) for i in range(self.workers))
        )
        out.ranges = len(walk.ranges)
        return out

    async def _walk(self, r: _Range, lo: int, hi: int, sink: Sink, out: _Scan, walk: _Walk) -> None:
        """Page 1 of [r.cursor, r.hi) until the range is done.

        Each answer is the first page of the range as it is at that moment, so logs that stay in
        the window are never skipped, whatever comes and goes. The next cursor is the last
        millisecond of the answer (fetched again, for the logs of that millisecond beyond the
        page). A page all in one millisecond is taken by `_millisecond`. Every answer's count is
        checked against what the previous answers imply (`_Range.expect`, or the sum of both
        halves after a split): a difference means logs came or went in the range.
        """
        while r.cursor < r.hi:
            result, stamps = await self.fetch(r.cursor, r.hi)
            out.requests += 1
            self._sink(sink, result.entries, stamps, lo, hi)
            total = result.total_count
            if out.requests == 1:
                out.first_total = total
            if r.expect is not None and total != r.expect:
                out.changed = True
            if r.pair is not None and r.pair.settle(r, total):
                out.changed = True
            r.expect = r.pair = None
            self.held.staging.close_before(walk.low_water() // DAY_MS)
            if len(stamps) < self.per_page or total <= len(stamps):
                return
            last = stamps[-1]
            if stamps[0] == last:
                ids = [e["id"] for e in result.entries]
                # This page is the first of its millisecond: by id, if ties come ordered by id.
                after = ids[-1] if ids == sorted(ids) else None
                requests, complete, ties = await self._millisecond(last, sink, lo, hi, after)
                out.requests += requests
                out.changed |= not complete
                # The answer counted [last, hi): all of it but the millisecond is still to come.
                r.cursor, r.expect = last + 1, total - ties
                continue
            r.cursor = last
            r.expect = total - sum(1 for s in stamps if s < last)
            await walk.maybe_split(r)

    async def _millisecond(
        self, moment: int, sink: Sink, lo: int, hi: int, after: str | None
    ) -> tuple[int, bool, int]:
        """Every log of one millisecond: (requests, seen without changes, how many it holds).

        By id (``id gt`` the last one seen), when the API orders the ties by id and honours the
        filter: then logs that stay are never skipped. Otherwise by page numbers, again from page 1
        when the count moves.
        """
        requests = 0
        ties: int | None = None
        while True:
            try:
                result, stamps = await self.fetch(moment, moment + 1, after_id=after)
            except BadRequestError:
                break  # no `id gt` here
            requests += 1
            ids = [e["id"] for e in result.entries]
            if ids != sorted(ids) or (after is not None and ids and ids[0] <= after):
                break  # ties are not ordered by id, or the filter is ignored
            if ties is None:  # the page that led here held `per_page` of them already
                ties = result.total_count + (self.per_page if after is not None else 0)
            self._sink(sink, result.entries, stamps, lo, hi)
            if len(ids) < self.per_page or result.total_count <= len(ids):
                return requests, True, ties
            after = ids[-1]
        for _ in range(TIE_ATTEMPTS):
            page, first = 1, None
            while True:
                result, stamps = await self.fetch(moment, moment + 1, page)
                requests += 1
                self._sink(sink, result.entries, stamps, lo, hi)
                if first is None:
                    first = result.total_count
                elif result.total_count != first:
                    break
                if len(stamps) < self.per_page or page * self.per_page >= first:
                    return requests, True, first
                page += 1
        return requests, False, 0

    def _sink(
        self, sink: Sink, entries: list[LogEntry], stamps: list[int], lo: int, hi: int
    ) -> None:
        if any(not lo <= s < hi for s in stamps):  # defensive: the server filters already
            kept = [(e, s) for e, s in zip(entries, stamps, strict=True) if lo <= s < hi]
            entries, stamps = [e for e, _ in kept], [s for _, s in kept]
        added = sink(entries, stamps)
        self.task.advance(added, requests=1)

    # -- reconcile ------------------------------------------------------------------------------

    async def reconcile(self, lo: int, hi: int, *, seen_changing: bool) -> tuple[bool, int, int]:
        """Make the logs held for [lo, hi) match the API's: (matched, API total, rounds).

        Where the window is known to have changed, it is paged again, one UTC day at a time, until
        a day's new paging is quiet and matches what is held. Which days: all of them when the pass
        saw logs come or go (or the window is small, up to RELIST_PAGES pages); otherwise a first
        round of counts, range by range (RELIST_PAGES pages' worth of logs, one request each),
        finds the ranges that differ.
        """
        rounds = 0
        spans = _day_spans(lo, hi)
        if seen_changing or len(self.held) <= RELIST_PAGES * self.per_page:
            dirty = spans
        else:
            rounds = 1
            differing = await self._check_ranges(lo, hi)
            dirty = [(a, b) for a, b in spans if any(x < b and a < y for x, y in differing)]
        while dirty and rounds < RECONCILE_ROUNDS:
            rounds += 1
            index = self.held.index()
            stamps = [s for s, _ in index]
            still = []
            for a, b in dirty:
                i, j = bisect.bisect_left(stamps, a), bisect.bisect_left(stamps, b)
                before = {log_id for _, log_id in index[i:j] if log_id in self.held.ms_of}
                current, clean, _ = await self.take(a, b, self.held.add)
                self.held.drop(before - current)
                if not clean:  # a quiet paging is the day as it is now: nothing more to compare
                    still.append((a, b))
            dirty = still
        if not dirty:
            return True, len(self.held), rounds
        result, stamps = await self.fetch(lo, hi)  # for the note: what the API says now
        self._sink(self.held.add, result.entries, stamps, lo, hi)
        return False, result.total_count, rounds

    async def _check_ranges(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """The ranges whose count differs from the logs held there (small ones are fixed here)."""
        index = self.held.index()
        stamps = [s for s, _ in index]
        size = RELIST_PAGES * self.per_page
        bounds = [lo]
        for k in range(size, len(stamps), size):
            if stamps[k] > bounds[-1]:
                bounds.append(stamps[k])
        bounds.append(hi)
        pending = list(itertools.pairwise(bounds))
        differing: list[tuple[int, int]] = []

        async def check() -> None:
            while pending:
                a, b = pending.pop()
                i, j = bisect.bisect_left(stamps, a), bisect.bisect_left(stamps, b)
                before = {log_id for _, log_id in index[i:j] if log_id in self.held.ms_of}
                result, page_stamps = await self.fetch(a, b)
                self._sink(self.held.add, result.entries, page_stamps, a, b)
                current = {e["id"] for e in result.entries}
                if result.total_count <= len(result.entries):
                    # The whole range in one answer: replace what is held there.
                    self.held.drop(before - current)
                    if current != before:
                        differing.append((a, b))
                elif len(before | current) != result.total_count:
                    differing.append((a, b))

        await asyncio.gather(*(check() for _ in range(self.workers)))
        return differing


def _day_spans(lo: int, hi: int) -> list[tuple[int, int]]:
    """[lo, hi) cut at UTC midnights."""
    cuts = range((lo // DAY_MS + 1) * DAY_MS, hi, DAY_MS)
    edges = [lo, *cuts, hi]
    return list(itertools.pairwise(edges))


# ---------------------------------------------------------------------------------------------
# The logs held so far


class _Held:
    """Ids held (id -> created_at ms), ids dropped by reconcile, and the staging writer."""

    def __init__(self, staging: _Staging, clock: Callable[[], float]) -> None:
        self.staging = staging
        self.clock = clock
        self.ms_of: dict[str, int] = {}
        self.dropped: dict[str, int] = {}  # staged, then found gone: left out when swapping in

    def __len__(self) -> int:
        return len(self.ms_of)

    def add(self, entries: list[LogEntry], stamps: list[int]) -> int:
        """Keep the entries not held yet; returns how many were new."""
        fresh = [(e, s) for e, s in zip(entries, stamps, strict=True) if e["id"] not in self.ms_of]
        if not fresh:
            return 0
        extracted_at = int(self.clock() * 1000)
        for entry, stamp in fresh:
            log_id = entry["id"]
            self.ms_of[log_id] = stamp
            if self.dropped.pop(log_id, None) is None:  # a dropped one is still staged
                self.staging.add(stamp // DAY_MS, _row(entry, stamp, extracted_at))
        return len(fresh)

    def drop(self, gone: Iterable[str]) -> None:
        """These held logs are no longer in the API: leave them out."""
        for log_id in gone:
            self.dropped[log_id] = self.ms_of.pop(log_id)

    def index(self) -> list[tuple[int, str]]:
        """(created_at ms, id) of every held log, in time order."""
        return sorted((s, i) for i, s in self.ms_of.items())


def _row(entry: LogEntry, stamp: int, extracted_at: int) -> dict[str, Any]:
    """One API entry -> one LOG_SCHEMA row; values of an unexpected type go to `extra`."""
    row: dict[str, Any] = {"created_at": stamp, "extracted_at": extracted_at}
    extra = {k: v for k, v in entry.items() if k not in _KNOWN}
    for name in _STR_FIELDS:
        value = entry.get(name)
        if name == "metadata" and value is not None and not isinstance(value, str):
            value = json.dumps(value, separators=(",", ":"))
        elif value is not None and not isinstance(value, str):
            extra[name], value = value, None
        row[name] = value
    for name in _INT_FIELDS:
        value = entry.get(name)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            extra[name], value = value, None
        row[name] = value
    for name in _FLOAT_FIELDS:
        value = entry.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            extra[name], value = value, None
        row[name] = value
    for name in _BOOL_FIELDS:
        value = entry.get(name)
        if value in (0, 1) and not isinstance(value, bool):
            value = bool(value)
        if value is not None and not isinstance(value, bool):
            extra[name], value = value, None
        row[name] = value
    if row["feedback"] is not None and not -128 <= row["feedback"] <= 127:
        extra["feedback"], row["feedback"] = row["feedback"], None
    row["extra"] = json.dumps(extra, sort_keys=True, default=str) if extra else None
    return row


# ---------------------------------------------------------------------------------------------
# Staging and swapping in


@dataclass
class _DayFiles:
    writer: pq.ParquetWriter | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)  # converted to Arrow every BATCH_ROWS
    batches: list[pa.RecordBatch] = field(default_factory=list)  # written as one row group
    buffered: int = 0
    parts: list[Path] = field(default_factory=list)


class _Staging:
    """Per-day Parquet files under a hidden folder next to the partitions, written in row groups.

    Rows wait as Arrow batches (compact) until a row group is full; a day's file is closed once
    every walker is past that day, so only the days being walked hold memory.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.days: dict[int, _DayFiles] = {}

    def add(self, day: int, row: dict[str, Any]) -> None:
        files = self.days.setdefault(day, _DayFiles())
        files.rows.append(row)
        if len(files.rows) >= BATCH_ROWS:
            self._batch(files)
            if files.buffered >= ROW_GROUP_ROWS:
                self._flush(day, files)

    def close_before(self, day: int) -> None:
        """Every walker is at `day` or later: earlier days are finished (reconcile may add parts)."""
        for earlier in [d for d, f in self.days.items() if d < day and (f.writer or f.rows)]:
            self._close(earlier)

    def folder(self, day: date) -> Path:
        return self.root / f"date={day.isoformat()}"

    def _batch(self, files: _DayFiles) -> None:
        if files.rows:
            files.batches.append(pa.RecordBatch.from_pylist(files.rows, schema=LOG_SCHEMA))
            files.buffered += len(files.rows)
            files.rows = []

    def _flush(self, day: int, files: _DayFiles) -> None:
        self._batch(files)
        if not files.batches:
            return
        if files.writer is None:
            path = self.folder(_date(day)) / f"part-{len(files.parts)}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            files.writer = pq.ParquetWriter(path, LOG_SCHEMA, compression="zstd")
            files.parts.append(path)
        files.writer.write_table(pa.Table.from_batches(files.batches, schema=LOG_SCHEMA))
        files.batches, files.buffered = [], 0

    def _close(self, day: int) -> None:
        files = self.days[day]
        self._flush(day, files)
        if files.writer is not None:
            files.writer.close()
            files.writer = None

    def close(self) -> None:
        for day in list(self.days):
            self._close(day)

    def discard(self) -> None:
        for files in self.days.values():
            if files.writer is not None:
                files.writer.close()
                files.writer = None
        shutil.rmtree(self.root, ignore_errors=True)


def _swap_in(
    staging: _Staging, dropped: dict[str, int], window: Window, data_dir: Path, gateway_id: str
) -> list[Path]:
    """Finish each day's staged folder, then rename each into place; returns the partitions."""
    lo, hi = _ceil_ms(window.start), _ceil_ms(window.end)
    staged: list[tuple[Path, Path]] = []
    for day in window.days():
        number = _day_number(day)
        files = staging.days.get(number, _DayFiles())
        folder = staging.folder(day)
        folder.mkdir(parents=True, exist_ok=True)
        gone = sorted(i for i, s in dropped.items() if s // DAY_MS == number)
        if gone:
            for part in files.parts:
                _drop_ids(part, pa.array(gone, pa.string()))
        target = partition_dir(data_dir, gateway_id, day)
        if not window.covers_day(day) and target.exists():
            # Keep the rows of this day outside the window; the window's own rows are replaced.
            _copy_filtered(sorted(target.glob("*.parquet")), folder / "part-kept.parquet", lo, hi)
        if not any(folder.glob("*.parquet")):
            pq.write_table(LOG_SCHEMA.empty_table(), folder / "part-0.parquet")
        staged.append((target, folder))
    for target, folder in staged:
        replace_partition(target, folder)
    return [target for target, _ in staged]


def _drop_ids(path: Path, ids: pa.Array) -> None:
    """Rewrite a staged file without the rows of these ids."""
    tmp = path.with_name(path.name + ".tmp")
    with pq.ParquetWriter(tmp, LOG_SCHEMA, compression="zstd") as writer:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=ROW_GROUP_ROWS):
            writer.write_batch(batch.filter(pc.invert(pc.is_in(batch["id"], value_set=ids))))
    tmp.replace(path)


def _copy_filtered(sources: Sequence[Path], dest: Path, lo: int, hi: int) -> None:
    """Rows of `sources` with created_at outside [lo, hi) ms, into `dest` (only if there are any)."""
    start = pa.scalar(lo, pa.timestamp("ms", tz="UTC"))
    end = pa.scalar(hi, pa.timestamp("ms", tz="UTC"))
    writer: pq.ParquetWriter | None = None
    try:
        for source in sources:
            for batch in pq.ParquetFile(source).iter_batches(batch_size=ROW_GROUP_ROWS):
                table = pa.Table.from_batches([batch]).cast(LOG_SCHEMA)
                at = table["created_at"]
                kept = table.filter(pc.or_(pc.less(at, start), pc.greater_equal(at, end)))
                if kept.num_rows:
                    writer = writer or pq.ParquetWriter(dest, LOG_SCHEMA, compression="zstd")
                    writer.write_table(kept)
    finally:
        if writer is not None:
            writer.close()


# ---------------------------------------------------------------------------------------------
# Times: the API speaks ISO-8601 with milliseconds and Z; inside, everything is integer ms.


def _ms(moment: datetime) -> int:
    return (moment - EPOCH) // MS


def _ceil_ms(moment: datetime) -> int:
    """The first whole millisecond at or after `moment` (logs have ms precision)."""
    return -((EPOCH - moment) // MS)


def _iso_ms(ms: int) -> str:
    return iso_ms(EPOCH + ms * MS)


def _entry_ms(entry: LogEntry) -> int:
    if not isinstance(entry.get("id"), str):
        raise ApiError(f"the API returned a log without a string id: {sorted(entry)}")
    raw = entry.get("created_at")
    try:
        moment = datetime.fromisoformat(str(raw))
    except ValueError:
        raise ApiError(f"log {entry.get('id')!r} has an unreadable created_at {raw!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // MS


def _date(day_number: int) -> date:
    return date(1970, 1, 1) + timedelta(days=day_number)


def _day_number(day: date) -> int:
    return (day - date(1970, 1, 1)).days
