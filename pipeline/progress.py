"""Progress of long stages: a rich bar on a terminal, a plain line every ~10 s otherwise, or nothing.

progress = Progress(enabled=not quiet)
with progress.task("extract", unit="logs", budget_per_s=3.6) as task:
    task.advance(50, requests=1)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO


class Task:
    """One stage's counters; shown as it goes."""

    def __init__(
        self,
        name: str,
        *,
        total: int | None,
        unit: str,
        budget_per_s: float | None,
        clock: Callable[[], float],
        emit: Callable[[Task, bool], None],
    ) -> None:
        self.name = name
        self.total = total
        self.unit = unit
        self.budget_per_s = budget_per_s
        self.done = 0
        self.requests = 0
        self.clock = clock
        self.started = clock()
        self._emit = emit

    def advance(self, n: int = 1, *, requests: int = 0) -> None:
        self.done += n
        self.requests += requests
        self._emit(self, False)

    def describe(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        parts = [f"{self.done:,}" + (f"/{self.total:,}" if self.total else "") + f" {self.unit}"]
        if self.requests:
            rate = self.requests / elapsed
            # The budget is a rate over its window, with a burst at the start: a stage that has
            # only begun runs above it for a while, which is no excess.
            budget = f" (budget {self.budget_per_s:.2f}/s on average)" if self.budget_per_s else ""
            parts.append(f"{self.requests:,} requests, {rate:.2f}/s{budget}")
        parts.append(f"{elapsed:.0f}s")
        return f"{self.name}: " + ", ".join(parts)


class Progress:
    """Progress output for one command. Disabled: silent."""

    def __init__(
        self,
        enabled: bool = True,
        stream: TextIO | None = None,
        *,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.clock = clock
        self.tty = enabled and bool(getattr(self.stream, "isatty", lambda: False)())

    @contextmanager
    def task(
        self,
        name: str,
        *,
        total: int | None = None,
        unit: str = "items",
        budget_per_s: float | None = None,
    ) -> Iterator[Task]:
        if not self.enabled:
            yield Task(
                name,
                total=total,
                unit=unit,
                budget_per_s=budget_per_s,
                clock=self.clock,
                emit=lambda _t, _f: None,
            )
        elif self.tty:
            with self._rich_task(name, total, unit, budget_per_s) as task:
                yield task
        else:
            last = [self.clock()]

            def emit(task: Task, final: bool) -> None:
                now = self.clock()
                if final or now - last[0] >= self.interval:
                    last[0] = now
                    print(task.describe(), file=self.stream, flush=True)

            task = Task(
                name, total=total, unit=unit, budget_per_s=budget_per_s, clock=self.clock, emit=emit
            )
            yield task
            emit(task, True)

    @contextmanager
    def _rich_task(
        self, name: str, total: int | None, unit: str, budget_per_s: float | None
    ) -> Iterator[Task]:
        # rich only for a bar on a terminal: a quiet or logged run starts without loading it
        from rich.console import Console
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[line]}"),
            TimeElapsedColumn(),
            console=Console(file=self.stream),
            transient=False,
        )
        with bar:
            handle = bar.add_task(name, total=total, line="")

            def emit(task: Task, _final: bool) -> None:
                line = task.describe().split(": ", 1)[1].rsplit(", ", 1)[0]
                bar.update(handle, completed=task.done, line=line)

            yield Task(
                name, total=total, unit=unit, budget_per_s=budget_per_s, clock=self.clock, emit=emit
            )
