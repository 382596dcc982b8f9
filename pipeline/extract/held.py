"""The logs held so far, by id, and the staging files they are written to.

Logs are de-duplicated by id here (the pass and reconcile hand every answer to ``add``); each new
one becomes a row of the day it belongs to in the staging files (``staging``: Parquet, pyarrow).
The staging opens with the first log held, so the extract's first requests do not wait for
pyarrow to load (start-up time, not a cycle: ``staging`` imports nothing from here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.extract.rows import DAY_MS, log_row
from pipeline.gateway.client import LogEntry

if TYPE_CHECKING:
    from pipeline.extract.staging import Staging


class Held:
    """Ids held (id -> created_at ms), ids dropped by reconcile, and the staging writer."""

    def __init__(self, staging_root: Path, clock: Callable[[], float]) -> None:
        self.staging_root = staging_root
        self.clock = clock
        self.ms_of: dict[str, int] = {}
        self.dropped: dict[str, int] = {}  # staged, then found gone: left out when swapping in
        self._staging: Staging | None = None

    def __len__(self) -> int:
        return len(self.ms_of)

    @property
    def staging(self) -> Staging:
        """The per-day staging files under `staging_root`, opened on first use."""
        if self._staging is None:
            from pipeline.extract.staging import Staging  # pyarrow: not before the first answer

            self._staging = Staging(self.staging_root)
        return self._staging

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
                self.staging.add(stamp // DAY_MS, log_row(entry, stamp, extracted_at))
        return len(fresh)

    def drop(self, gone: Iterable[str]) -> None:
        """These held logs are no longer in the API: leave them out."""
        for log_id in gone:
            self.dropped[log_id] = self.ms_of.pop(log_id)

    def index(self) -> list[tuple[int, str]]:
        """(created_at ms, id) of every held log, in time order."""
        return sorted((s, i) for i, s in self.ms_of.items())

    def close_before(self, day: int) -> None:
        """Every walker is at `day` or later: the staged days before it are finished."""
        if self._staging is not None:
            self._staging.close_before(day)

    def discard(self) -> None:
        """Remove the staging files (after the swap, or when the extract stopped)."""
        if self._staging is not None:
            self._staging.discard()
