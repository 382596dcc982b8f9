"""The exact walker: every log of a span of created_at, from an API that pages by number only.

The Logs API pages by page number only, has no cursor, offers only `gt`/`lt` on created_at (ms,
not unique; thousands of logs can share one), ``eq``/``neq`` on ``id`` (several values: a log
matching none of them), and logs arrive and vanish while one pages. Ids are opaque (never
sorted or compared for order) and the order of ties is whatever the API gives. So page numbers
are never used across a changing set, and nothing relies on the order of ties:

1. **The pass.** Ask for page 1 of ``[cursor, hi)`` ascending, minus the logs of the cursor's
   millisecond already read (``id neq [those ids]``), starting at the window's start with nothing
   excluded. Each answer is a snapshot of the first 50 logs not yet read, so a log that is in the
   window from the extract's start to its end cannot be skipped, whatever arrives or vanishes
   meanwhile: when the answer was given it was either read already or among those 50, or after
   them. The cursor moves to the last millisecond of the answer, its logs excluded in the next
   question: no log is fetched twice on a quiet gateway, so the pass costs the minimum,
   ceil(logs / 50) requests.
2. **Crowded milliseconds** (``millisecond``). Once the ids of one millisecond would make the
   ``neq`` list too long for one URL (``NEQ_CHARS``, about 300 ids; halved whenever the API
   answers a long list with a 4xx, down to ``NEQ_FLOOR``), that millisecond is cut
   into parts by ``duration`` (``gt``/``lt``, always present and never changed after the log is
   written), at the median of the durations read so far, and each part is paged the same way:
   page 1 of the part minus its logs already read, until an answer holds all that is left. A part
   whose logs all share one duration is paged by page numbers instead and believed only when
   one pass over its pages saw a steady count and that many distinct ids (else the extract says
   it is unsettled). 300 logs in one millisecond cost 6 requests, as 300 logs anywhere else.
3. Each answer's total_count is compared with what the previous one implies (``Range.expect``):
   a difference means logs arrived or vanished ahead of the cursor (counted, ``changes_ahead``;
   harmless: arrivals are read when the cursor gets there, vanished logs are never read). Up to
   ``budget.concurrency`` stretches of the window are walked side by side (``ranges``).

Why not ``id gt`` or page numbers inside a millisecond: ids are opaque (sorting them means
nothing, and ``gt`` on them is not a documented order), the order of ties is whatever the API
gives and need not stay the same between two requests, and page numbers shift as soon as a log
of the millisecond vanishes. ``neq`` relies on none of that: an answer is the first logs not yet
read, whatever their order. Cutting by ``duration`` assumes every log has one (Cloudflare's list
entries always carry it); a part is believed only when its last answer held all that was left.

Changes behind the cursor cannot show in the pass: ``reconcile`` finds them by counting.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pipeline.errors import ApiError, BadRequestError
from pipeline.extract.held import Held
from pipeline.extract.ranges import Range, Scan, Walk
from pipeline.extract.rows import DAY_MS, at_ms, entry_ms
from pipeline.gateway.client import LogEntry, LogPage, LogsClient
from pipeline.progress import Task
from pipeline.timefmt import iso_ms

NEQ_CHARS = 9_000  # JSON of one `id neq` list: ~310 ULIDs, a URL of ~11 kB (16 kB is the usual cap)
SPLIT_PAGES = 20  # a range with more pages than this left is shared with an idle worker
NEQ_FLOOR = 1_000  # a 4xx for an `id neq` list no longer than this is not about its length
TIE_ATTEMPTS = 3  # a part of one millisecond and one duration, paged by numbers until steady

Sink = Callable[[list[LogEntry], list[int]], int]
Seen = dict[str, int | None]  # id -> duration, of the logs of one millisecond read so far


class _TooLong(Exception):
    """The API refused a long `id neq` list (a 4xx): the pager's limit is halved, ask again."""


class Pager:
    """Pages spans of the window for one extract: the pass and the crowded milliseconds."""

    def __init__(
        self,
        client: LogsClient,
        *,
        filters: list[dict[str, Any]],
        per_page: int,
        held: Held,
        task: Task,
        workers: int = 1,
    ) -> None:
        self.client = client
        self.filters = filters
        self.per_page = per_page
        self.workers = max(1, workers)
        self.held = held
        self.task = task
        self.requests = 0  # list requests made by this pager
        self.durations: Seen = {}  # the logs of crowded milliseconds: id -> duration
        self.neq_chars = NEQ_CHARS  # halved each time the API refuses a list this long

    async def fetch(
        self,
        lo: int,
        hi: int,
        page: int = 1,
        *,
        exclude: Iterable[str] = (),
        extra: Iterable[dict[str, Any]] = (),
        per_page: int | None = None,
    ) -> tuple[LogPage, list[int]]:
        """Page `page` of the logs with lo <= created_at < hi (ms), ascending, minus the ids in
        `exclude`, narrowed by `extra` filters; and their ms."""
        filters = [
            {"key": "created_at", "operator": "gt", "value": [iso_ms(at_ms(lo - 1))]},
            {"key": "created_at", "operator": "lt", "value": [iso_ms(at_ms(hi))]},
            *extra,
        ]
        excluded = list(exclude)
        if excluded:
            filters.append({"key": "id", "operator": "neq", "value": excluded})
        self.requests += 1
        try:
            result = await self.client.list_logs(
                filters=[*filters, *self.filters],
                page=page,
                per_page=per_page or self.per_page,
                order_by="created_at",
                direction="asc",
            )
        except BadRequestError:
            length = _neq_chars(excluded)
            if length <= NEQ_FLOOR:
                raise
            self.neq_chars = min(self.neq_chars, length // 2)
            raise _TooLong from None
        stamps = [entry_ms(e) for e in result.entries]
        if any(b < a for a, b in itertools.pairwise(stamps)):
            raise ApiError("the Logs API did not return logs in created_at order (asked: asc)")
        if excluded and not {e["id"] for e in result.entries}.isdisjoint(excluded):
            raise ApiError("the Logs API returned a log its `id neq` filter excluded")
        return result, stamps

    async def count(self, lo: int, hi: int, extra: Iterable[dict[str, Any]] = ()) -> int:
        """How many logs lo <= created_at < hi (and `extra`) holds now: one request of one."""
        result, _ = await self.fetch(lo, hi, extra=extra, per_page=1)
        self.task.advance(0, requests=1)
        return result.total_count

    def deliver(
        self, sink: Sink, entries: list[LogEntry], stamps: list[int], lo: int, hi: int
    ) -> None:
        """Hand the entries of one answer that lie in [lo, hi) to `sink`; count the request."""
        if any(not lo <= s < hi for s in stamps):  # defensive: the server filters already
            kept = [(e, s) for e, s in zip(entries, stamps, strict=True) if lo <= s < hi]
            entries, stamps = [e for e, _ in kept], [s for _, s in kept]
        added = sink(entries, stamps)
        self.task.advance(added, requests=1)

    async def scan(self, lo: int, hi: int, sink: Sink) -> Scan:
        """The pass: hand every log of [lo, hi) to `sink`, up to `workers` ranges at once.

        One range starts. While a range still holds more than SPLIT_PAGES pages and a worker is
        idle, the range's walker hands the later half of its time span to that worker, right after
        an answer (so both halves start from a known count). Each range is walked by `_walk`.
        """
        out = Scan()
        walk = Walk(ranges=[Range(lo, hi)], threshold=SPLIT_PAGES * self.per_page)
        started = self.requests

        async def worker(job: Range | None) -> None:
            while True:
                if job is None:
                    job = await walk.next_job()
                    if job is None:
                        return
                try:
                    await self._walk(job, lo, hi, sink, out, walk)
                finally:
                    await walk.finish(job)
                job = None

        await asyncio.gather(
            *(worker(walk.ranges[0] if i == 0 else None) for i in range(self.workers))
        )
        out.ranges = len(walk.ranges)
        out.requests = self.requests - started
        return out

    async def _walk(self, r: Range, lo: int, hi: int, sink: Sink, out: Scan, walk: Walk) -> None:
        """Page 1 of [r.cursor, r.hi) minus the cursor's logs already read, until the range is
        done; a millisecond too crowded for one `neq` list goes to `millisecond`."""
        while r.cursor < r.hi:
            if _neq_chars(r.seen) > self.neq_chars:
                out.unverified += not await self.millisecond(r.cursor, r.seen, sink, lo, hi)
                r.cursor, r.seen, r.expect, r.pair = r.cursor + 1, {}, None, None
                continue
            first = self.requests == 0
            try:
                result, stamps = await self.fetch(r.cursor, r.hi, exclude=r.seen)
            except _TooLong:
                continue  # the limit is lower now: this millisecond goes to `millisecond`
            self.deliver(sink, result.entries, stamps, lo, hi)
            total = result.total_count
            if first:
                out.first_total = total
            if r.expect is not None and total != r.expect:
                out.changes_ahead += abs(total - r.expect)
            if r.pair is not None:
                out.changes_ahead += r.pair.settle(r, total)
            r.expect = r.pair = None
            self.held.close_before(walk.low_water() // DAY_MS)
            if len(stamps) < self.per_page or total <= len(stamps):
                return
            last = stamps[-1]
            at_last = {
                e["id"]: duration_of(e)
                for e, s in zip(result.entries, stamps, strict=True)
                if s == last
            }
            if last == r.cursor:  # a crowded millisecond: reconcile may cut it by duration
                r.seen.update(at_last)
                self.durations.update(r.seen)
            else:
                r.cursor, r.seen = last, at_last
            r.expect = total - len(stamps)
            await walk.maybe_split(r)

    async def millisecond(
        self, moment: int, seen: Seen, sink: Sink, lo: int, hi: int, *, limit: int | None = None
    ) -> bool:
        """Every log of one millisecond not in `seen` to `sink`; `seen` gains them. False when a
        part of it could not be paged with a steady count (see the module doc), or when this
        pager's requests reached `limit` first."""
        steady = True
        parts: list[tuple[int | None, int | None]] = [(None, None)]  # durations [a, b)
        while parts:
            a, b = parts.pop()
            while True:
                if limit is not None and self.requests >= limit:
                    return False
                mine = {i: d for i, d in seen.items() if within(d, a, b)}
                if _neq_chars(mine) > self.neq_chars:
                    cut = cut_durations(mine.values(), a)
                    if cut is None:
                        steady &= await self._by_pages(moment, a, b, seen, sink, lo, hi)
                    else:
                        parts += [(a, cut), (cut, b)]
                    break
                try:
                    result, stamps = await self.fetch(
                        moment, moment + 1, exclude=mine, extra=duration_filters(a, b)
                    )
                except _TooLong:
                    continue  # the limit is lower now: this part is cut again
                self.deliver(sink, result.entries, stamps, lo, hi)
                seen.update((e["id"], duration_of(e)) for e in result.entries)
                if len(stamps) < self.per_page or result.total_count <= len(stamps):
                    break
        self.durations.update(seen)
        return steady

    async def _by_pages(
        self, moment: int, a: int | None, b: int | None, seen: Seen, sink: Sink, lo: int, hi: int
    ) -> bool:
        """A part of one millisecond whose logs share one duration: by page numbers, believed
        when one pass over its pages saw a steady count and that many distinct ids."""
        extra = duration_filters(a, b)
        for _ in range(TIE_ATTEMPTS):
            page, first, ids = 1, None, set[str]()
            while True:
                result, stamps = await self.fetch(moment, moment + 1, page, extra=extra)
                self.deliver(sink, result.entries, stamps, lo, hi)
                seen.update((e["id"], duration_of(e)) for e in result.entries)
                ids.update(e["id"] for e in result.entries)
                if first is None:
                    first = result.total_count
                elif result.total_count != first:
                    break
                if len(stamps) < self.per_page or page * self.per_page >= first:
                    if len(ids) == first:
                        return True
                    break
                page += 1
        return False


def duration_of(entry: Mapping[str, Any]) -> int | None:
    value = entry.get("duration")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def within(duration: int | None, a: int | None, b: int | None) -> bool:
    """Whether a log of this duration is in the part [a, b) (None: unbounded; a log without a
    duration only in the unbounded part)."""
    if duration is None:
        return a is None and b is None
    return (a is None or duration >= a) and (b is None or duration < b)


def cut_durations(durations: Iterable[int | None], low: int | None) -> int | None:
    """A duration that splits a part's logs read so far in two non-empty halves, or None."""
    known = sorted(d for d in durations if d is not None)
    if not known or known[0] == known[-1]:
        return None
    cut = int(statistics.median_low(known))
    if cut == known[0]:  # the lower half would be empty: the next duration up
        cut = next(d for d in known if d > cut)
    return cut if low is None or cut > low else None


def duration_filters(a: int | None, b: int | None) -> list[dict[str, Any]]:
    """Filters for duration in [a, b) (integers: gt a-1)."""
    out = []
    if a is not None:
        out.append({"key": "duration", "operator": "gt", "value": [a - 1]})
    if b is not None:
        out.append({"key": "duration", "operator": "lt", "value": [b]})
    return out


def _neq_chars(ids: Iterable[str]) -> int:
    """The JSON length of an `id neq` list of these ids."""
    return sum(len(json.dumps(i)) + 1 for i in ids)
