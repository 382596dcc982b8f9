"""Reconcile: make the logs held match the API's where the window changed while it was paged.

Runs only when the pass saw logs come or go, or the check after it differs (``paging``). Where
the window is known to have changed it is paged again, one UTC day at a time, until a day's new
paging is quiet (no change seen, its count checked); that paging replaces what was held for the
day. Which days: every day when the pass saw changes (or the window is small, up to 8 pages);
otherwise one count per range of 8 pages' worth of logs finds the days that differ. After 5
rounds with logs still changing, the result says so (``complete=False`` and a note) instead of
pretending.

What counts cannot see: as many logs added behind the cursor as deleted, all within one checked
range, with no change visible to the pass. Logs that stay are never lost, nothing is held twice,
and extracting again settles such a window.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools

from pipeline.extract.paging import Pager
from pipeline.extract.rows import DAY_MS

RECONCILE_ROUNDS = 5
RELIST_PAGES = 8  # reconcile checks ranges of this many pages' worth of logs


async def reconcile(
    pager: Pager, lo: int, hi: int, *, seen_changing: bool
) -> tuple[bool, int, int]:
    """Make the logs held for [lo, hi) match the API's: (matched, API total, rounds).

    Where the window is known to have changed, it is paged again, one UTC day at a time, until
    a day's new paging is quiet and matches what is held. Which days: all of them when the pass
    saw logs come or go (or the window is small, up to RELIST_PAGES pages); otherwise a first
    round of counts, range by range (RELIST_PAGES pages' worth of logs, one request each),
    finds the ranges that differ.
    """
    held = pager.held
    rounds = 0
    spans = _day_spans(lo, hi)
    if seen_changing or len(held) <= RELIST_PAGES * pager.per_page:
        dirty = spans
    else:
        rounds = 1
        differing = await _check_ranges(pager, lo, hi)
        dirty = [(a, b) for a, b in spans if any(x < b and a < y for x, y in differing)]
    while dirty and rounds < RECONCILE_ROUNDS:
        rounds += 1
        index = held.index()
        stamps = [s for s, _ in index]
        still = []
        for a, b in dirty:
            i, j = bisect.bisect_left(stamps, a), bisect.bisect_left(stamps, b)
            before = {log_id for _, log_id in index[i:j] if log_id in held.ms_of}
            current, clean, _ = await pager.take(a, b, held.add)
            held.drop(before - current)
            if not clean:  # a quiet paging is the day as it is now: nothing more to compare
                still.append((a, b))
        dirty = still
    if not dirty:
        return True, len(held), rounds
    result, stamps = await pager.fetch(lo, hi)  # for the note: what the API says now
    pager.deliver(held.add, result.entries, stamps, lo, hi)
    return False, result.total_count, rounds


async def _check_ranges(pager: Pager, lo: int, hi: int) -> list[tuple[int, int]]:
    """The ranges whose count differs from the logs held there (small ones are fixed here)."""
    held = pager.held
    index = held.index()
    stamps = [s for s, _ in index]
    size = RELIST_PAGES * pager.per_page
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
            before = {log_id for _, log_id in index[i:j] if log_id in held.ms_of}
            result, page_stamps = await pager.fetch(a, b)
            pager.deliver(held.add, result.entries, page_stamps, a, b)
            current = {e["id"] for e in result.entries}
            if result.total_count <= len(result.entries):
                # The whole range in one answer: replace what is held there.
                held.drop(before - current)
                if current != before:
                    differing.append((a, b))
            elif len(before | current) != result.total_count:
                differing.append((a, b))

    await asyncio.gather(*(check() for _ in range(pager.workers)))
    return differing


def _day_spans(lo: int, hi: int) -> list[tuple[int, int]]:
    """[lo, hi) cut at UTC midnights."""
    cuts = range((lo // DAY_MS + 1) * DAY_MS, hi, DAY_MS)
    edges = [lo, *cuts, hi]
    return list(itertools.pairwise(edges))
