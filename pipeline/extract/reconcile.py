"""Reconcile: find by counting where the window changed behind the pass, re-read only there.

The pass (``paging``) holds every log that was in the window from the extract's start to its end,
once each, whatever changed meanwhile. What it cannot see are changes behind its cursor: logs
that arrived where it had already read (not held yet) and logs it read that vanished since (held,
but gone). Those are found by counting, not by reading again:

1. One request of ``per_page=1`` counts the window; the same number as held: done.
2. Otherwise the range is cut in two at the median of the held logs' times and each half counted
   the same way, down the halves whose count differs from what is held there (a bisection). A
   range that holds at most a page of logs is read instead of counted, one request, and that
   answer replaces what is held there: the logs it does not hold any more vanished, the new ones
   arrived. A single crowded millisecond is read again by ``Pager.millisecond``.
3. When every differing range is settled, the window is counted again (logs may have changed
   meanwhile elsewhere) and the rounds go on while counts differ.

The cost is bounded: after ``bound`` requests (``extra_bound``: 40% of the pass, at least 16) it
stops and says which ranges are still unsettled, their counts against what is held, so the result
is honest (exit 1) and extracting again settles the rest. On a quiet gateway it costs one count.

What counts cannot see: as many logs arriving as vanishing behind the cursor within one counted
range. Logs present throughout are never lost and nothing is held twice all the same.
"""

from __future__ import annotations

import asyncio
import bisect
import math
from dataclasses import dataclass, field
from typing import Any

from pipeline.extract.paging import (
    Pager,
    Seen,
    cut_durations,
    duration_filters,
    duration_of,
    within,
)
from pipeline.gateway.client import LogEntry

RECONCILE_SHARE = 0.4  # the extra requests allowed, as a share of the pass's
RECONCILE_FLOOR = 16  # ... and at least this many, so a small window can settle too
LEAF_SLACK = 8  # a range holding up to per_page - this many is read, not counted


def extra_bound(pass_requests: int) -> int:
    """How many requests reconcile may spend after a pass of `pass_requests`."""
    return max(RECONCILE_FLOOR, math.ceil(RECONCILE_SHARE * pass_requests))


@dataclass
class Settled:
    """What reconcile found and left."""

    complete: bool = False
    total: int = 0  # the API's last count of the window
    rounds: int = 0
    arrived: int = 0  # logs found where the pass had read already: now held
    vanished: int = 0  # logs the pass read that were gone when counted again: dropped
    unsettled: list[tuple[int, int, int, int]] = field(default_factory=list)  # a, b, API, held


@dataclass(frozen=True)
class _Node:
    lo: int
    hi: int
    api: int | None  # the API's count, when already asked
    part: tuple[int | None, int | None] | None = None  # one millisecond: durations [a, b)


async def reconcile(pager: Pager, lo: int, hi: int, *, bound: int) -> Settled:
    """Make the logs held for [lo, hi) match the API's where counts differ, within `bound`
    requests; see the module doc."""
    out = Settled()
    limit = pager.requests + bound
    while True:
        out.rounds += 1
        index = pager.held.index()
        stamps = [s for s, _ in index]
        left, root = await _round(pager, _Node(lo, hi, None), index, stamps, out, limit)
        out.total = root if root is not None else out.total
        if left:
            out.unsettled = [
                (
                    n.lo,
                    n.hi,
                    -1 if n.api is None else n.api,
                    len(_held_ids(pager, index, stamps, n)),
                )
                for n in sorted(left, key=lambda n: n.lo)
            ]
            return out
        if root is not None and root == _held_count(pager, lo, hi):
            out.complete = True
            return out


async def _round(
    pager: Pager,
    top: _Node,
    index: list[tuple[int, str]],
    stamps: list[int],
    out: Settled,
    limit: int,
) -> tuple[list[_Node], int | None]:
    """One bisection from `top`, up to `pager.workers` looks at once, depth first (so the
    budget settles whole ranges): (the ranges left at the limit, the API's count of `top`)."""
    queue: list[_Node] = [top]
    left: list[_Node] = []
    root: list[int] = []
    busy = [0]  # looks under way
    wake = asyncio.Condition()

    async def work() -> None:
        while True:
            async with wake:
                await wake.wait_for(lambda: bool(queue) or not busy[0])
                if not queue:
                    return
                node = queue.pop()
                busy[0] += 1
            children: list[_Node] = []
            try:
                if pager.requests >= limit:
                    left.append(node)
                else:
                    api, children = await _look(pager, node, index, stamps, out, limit=limit)
                    if node is top:
                        root.append(api)
            finally:
                async with wake:
                    busy[0] -= 1
                    queue.extend(children)
                    wake.notify_all()

    await asyncio.gather(*(work() for _ in range(pager.workers)))
    return left, (root[0] if root else None)


async def _look(
    pager: Pager,
    node: _Node,
    index: list[tuple[int, str]],
    stamps: list[int],
    out: Settled,
    *,
    limit: int,
) -> tuple[int, list[_Node]]:
    """Count or read one range: (the API's count, the parts still to look at)."""
    held = _held_ids(pager, index, stamps, node)
    current: set[str] = set()
    single = node.hi - node.lo == 1
    extra: list[dict[str, Any]] = []
    if node.part is not None:
        held = {i for i in held if within(pager.durations.get(i), *node.part)}
        extra = duration_filters(*node.part)
    if len(held) <= pager.per_page - LEAF_SLACK:
        result, page_stamps = await pager.fetch(node.lo, node.hi, extra=extra)
        if result.total_count <= len(result.entries):  # the whole range in one answer
            current = {e["id"] for e in result.entries}
            if single:
                pager.durations.update((e["id"], duration_of(e)) for e in result.entries)
            pager.deliver(
                lambda e, s: _add(pager, out, e, s), result.entries, page_stamps, *_span(node)
            )
            _drop(pager, out, held - current)
            return result.total_count, []
        api = result.total_count
        pager.task.advance(0, requests=1)
    else:
        api = node.api if node.api is not None else await pager.count(node.lo, node.hi, extra)
    if api == len(held):
        return api, []
    if not single:
        return api, _halves(node, stamps)
    # One crowded millisecond: cut by the durations of the logs held there, count the parts.
    known = [pager.durations.get(i) for i in held]
    low, high = node.part or (None, None)
    cut = None if None in known else cut_durations(known, low)
    if cut is not None:
        return api, [
            _Node(node.lo, node.hi, None, (low, cut)),
            _Node(node.lo, node.hi, None, (cut, high)),
        ]
    if node.part is not None:
        return api, [node]  # one duration, many logs: counted again (or left at the bound)
    seen: Seen = {}
    current.clear()

    def keep(entries: list[LogEntry], stamps_: list[int]) -> int:
        current.update(e["id"] for e in entries)
        return _add(pager, out, entries, stamps_)

    if await pager.millisecond(node.lo, seen, keep, node.lo, node.hi, limit=limit):
        _drop(pager, out, held - current)
        return len(current), []
    return len(current), [node]  # not steady: left for the next look (or the bound)


def _halves(node: _Node, stamps: list[int]) -> list[_Node]:
    """The two halves of a range at the median of the held logs' times (by time if none; a
    crowded first millisecond on its own)."""
    i, j = bisect.bisect_left(stamps, node.lo), bisect.bisect_left(stamps, node.hi)
    cut = stamps[(i + j) // 2] if j > i else (node.lo + node.hi) // 2
    if cut <= node.lo:
        k = bisect.bisect_right(stamps, node.lo, i, j)
        cut = stamps[k] if k < j else node.lo + 1
    if not node.lo < cut < node.hi:
        cut = node.lo + 1
    return [_Node(node.lo, cut, None), _Node(cut, node.hi, None)]


def _span(node: _Node) -> tuple[int, int]:
    return node.lo, node.hi


def _held_ids(
    pager: Pager, index: list[tuple[int, str]], stamps: list[int], node: _Node
) -> set[str]:
    """The ids held in the range now (the round's index, less what was dropped since)."""
    i, j = bisect.bisect_left(stamps, node.lo), bisect.bisect_left(stamps, node.hi)
    return {log_id for _, log_id in index[i:j] if log_id in pager.held.ms_of}


def _held_count(pager: Pager, lo: int, hi: int) -> int:
    return sum(1 for s in pager.held.ms_of.values() if lo <= s < hi)


def _add(pager: Pager, out: Settled, entries: list[LogEntry], stamps: list[int]) -> int:
    added = pager.held.add(entries, stamps)
    out.arrived += added
    return added


def _drop(pager: Pager, out: Settled, gone: set[str]) -> None:
    pager.held.drop(gone)
    out.vanished += len(gone)
