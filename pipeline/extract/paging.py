"""The exact walker: every log of a span of created_at, from an API that pages by number only.

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
   stretch has more than 20 pages left, an idle worker takes the later half of its time span
   (``ranges``).
2. **Check.** Changes behind the cursor cannot show in the pass, so when it took more than one
   request, one more compares the window's total_count with the logs held.

When the pass saw logs come or go, or the check differs, ``reconcile`` pages again where the
window changed, with the same ``Pager.take``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from pipeline.errors import ApiError, BadRequestError
from pipeline.extract.ranges import Range, Scan, Walk
from pipeline.extract.rows import DAY_MS, at_ms, entry_ms
from pipeline.extract.staging import Held
from pipeline.gateway.client import LogEntry, LogPage, LogsClient
from pipeline.progress import Task
from pipeline.timefmt import iso_ms

TIE_ATTEMPTS = 5
SPLIT_PAGES = 20  # a range with more pages than this left is shared with an idle worker

Sink = Callable[[list[LogEntry], list[int]], int]


class Pager:
    """Pages spans of the window for one extract: the pass, its check, and the tie walks."""

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
        self.ranges = 0  # walked by the first pass
        self.seen_changing = False  # some answer showed logs coming or going
        self.held = held
        self.task = task

    async def fetch(
        self, lo: int, hi: int, page: int = 1, *, after_id: str | None = None
    ) -> tuple[LogPage, list[int]]:
        """Page `page` of the logs with lo <= created_at < hi (ms), ascending; and their ms."""
        filters = [
            {"key": "created_at", "operator": "gt", "value": [iso_ms(at_ms(lo - 1))]},
            {"key": "created_at", "operator": "lt", "value": [iso_ms(at_ms(hi))]},
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
        stamps = [entry_ms(e) for e in result.entries]
        if any(b < a for a, b in itertools.pairwise(stamps)):
            raise ApiError("the Logs API did not return logs in created_at order (asked: asc)")
        return result, stamps

    def deliver(
        self, sink: Sink, entries: list[LogEntry], stamps: list[int], lo: int, hi: int
    ) -> None:
        """Hand the entries of one answer that lie in [lo, hi) to `sink`; count the request."""
        if any(not lo <= s < hi for s in stamps):  # defensive: the server filters already
            kept = [(e, s) for e, s in zip(entries, stamps, strict=True) if lo <= s < hi]
            entries, stamps = [e for e, _ in kept], [s for _, s in kept]
        added = sink(entries, stamps)
        self.task.advance(added, requests=1)

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
        self.deliver(collect, result.entries, stamps, lo, hi)
        total = result.total_count
        count = added if first else len(seen)
        if total != count:
            return seen, False, total
        if total <= len(result.entries):  # the whole range in this answer: compare the ids too
            ids = {e["id"] for e in result.entries}
            return seen, ids == (set(self.held.ms_of) if first else seen), total
        return seen, True, total

    async def scan(self, lo: int, hi: int, sink: Sink) -> Scan:
        """Hand every log of [lo, hi) to `sink` (some twice), up to `workers` ranges at once.

        One range starts. While a range still holds more than SPLIT_PAGES pages and a worker is
        idle, the range's walker hands the later half of its time span to that worker, right after
        an answer (so both halves start from a known count). Each range is walked by `_walk`.
        """
        out = Scan()
        walk = Walk(ranges=[Range(lo, hi)], threshold=SPLIT_PAGES * self.per_page)

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
        return out

    async def _walk(self, r: Range, lo: int, hi: int, sink: Sink, out: Scan, walk: Walk) -> None:
        """Page 1 of [r.cursor, r.hi) until the range is done.

        Each answer is the first page of the range as it is at that moment, so logs that stay in
        the window are never skipped, whatever comes and goes. The next cursor is the last
        millisecond of the answer (fetched again, for the logs of that millisecond beyond the
        page). A page all in one millisecond is taken by `_millisecond`. Every answer's count is
        checked against what the previous answers imply (`Range.expect`, or the sum of both
        halves after a split): a difference means logs came or went in the range.
        """
        while r.cursor < r.hi:
            result, stamps = await self.fetch(r.cursor, r.hi)
            out.requests += 1
            self.deliver(sink, result.entries, stamps, lo, hi)
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
            self.deliver(sink, result.entries, stamps, lo, hi)
            if len(ids) < self.per_page or result.total_count <= len(ids):
                return requests, True, ties
            after = ids[-1]
        for _ in range(TIE_ATTEMPTS):
            page, first = 1, None
            while True:
                result, stamps = await self.fetch(moment, moment + 1, page)
                requests += 1
                self.deliver(sink, result.entries, stamps, lo, hi)
                if first is None:
                    first = result.total_count
                elif result.total_count != first:
                    break
                if len(stamps) < self.per_page or page * self.per_page >= first:
                    return requests, True, first
                page += 1
        return requests, False, 0
