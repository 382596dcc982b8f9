"""The stretches of the window that the pass walks side by side, and how a busy one is shared.

API latency, not the budget, would limit one walker, so up to ``budget.concurrency`` walkers page
the window at once. One range starts; while a range still holds more than ``threshold`` logs and
a worker is idle, the range's walker hands the later half of its time span to that worker, right
after an answer, so both halves start from a known count. The first answers of the two halves
must add up to what the whole counted (``Pair``); if they do not, logs came or went meanwhile.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class Scan:
    """What one scan of a span saw."""

    first_total: int = 0  # the window's count when the pass began
    requests: int = 0
    ranges: int = 1
    changes_ahead: int = 0  # how far answers' counts moved from what the previous ones implied
    unverified: int = 0  # crowded milliseconds a part of which never paged with a steady count


@dataclass(eq=False)
class Range:
    """One stretch of the window being walked: [cursor, hi) is what is left of it."""

    cursor: int
    hi: int
    expect: int | None = None  # what the next answer should count if nothing changes
    seen: dict[str, int | None] = field(
        default_factory=dict
    )  # the cursor's ms, read: id -> duration
    pair: Pair | None = None  # just split: the next answers of both halves are checked together
    done: bool = False


@dataclass(eq=False)
class Pair:
    """After a split, the first answers of the two halves must add up to the whole's count."""

    expect: int
    counts: dict[int, int] = field(default_factory=dict)

    def settle(self, half: Range, total: int) -> int:
        """Record one half's count; once both are in, by how much they miss the whole's."""
        self.counts[id(half)] = total
        return abs(sum(self.counts.values()) - self.expect) if len(self.counts) == 2 else 0


@dataclass(eq=False)
class Walk:
    """The ranges of one scan, and the idle workers waiting for a share of one."""

    ranges: list[Range]
    threshold: int  # split only ranges with more logs than this left
    idle: int = 0
    offers: list[Range] = field(default_factory=list)
    wake: asyncio.Condition = field(default_factory=asyncio.Condition)

    def finished(self) -> bool:
        return all(r.done for r in self.ranges)

    def low_water(self) -> int:
        """No walker will add logs before this millisecond any more (only reconcile may)."""
        return min((r.cursor for r in self.ranges if not r.done), default=2**62)

    async def next_job(self) -> Range | None:
        """Wait, idle, for a range to walk: a half split off for us, or None once all are done."""
        async with self.wake:
            self.idle += 1
            self.wake.notify_all()
            await self.wake.wait_for(lambda: bool(self.offers) or self.finished())
            self.idle -= 1
            return self.offers.pop() if self.offers else None

    async def finish(self, r: Range) -> None:
        """`r` is walked to its end (or its walker failed): wake whoever waits on that."""
        r.done = True
        async with self.wake:
            self.wake.notify_all()

    async def maybe_split(self, r: Range) -> None:
        """Hand the later half of `r` to an idle worker, if one waits and `r` is big enough."""
        if not self.idle or self.offers or r.expect is None or r.expect <= self.threshold:
            return
        middle = (r.cursor + r.hi) // 2
        if not r.cursor < middle < r.hi:
            return
        half = Range(middle, r.hi)
        r.hi = middle
        r.pair = half.pair = Pair(r.expect)
        r.expect = None
        self.ranges.append(half)
        async with self.wake:
            self.offers.append(half)
            self.wake.notify_all()
