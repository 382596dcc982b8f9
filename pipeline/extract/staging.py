"""Writing the logs held: per-day staging files, then one rename per partition.

The logs ``held`` keeps (de-duplicated by id) are streamed into per-day staging files in row
groups (``Staging``), so memory stays bounded; the staged days then replace their partitions,
each with one rename (``Staging.swap_in``). A day the window only partly covers keeps the rows
of that day outside the window that are already on disk. Until the swap nothing under the
partitions changes, so a run stopped by a cap or an error leaves them as they were.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.extract.rows import DAY_MS, ceil_ms, day_date, day_number
from pipeline.schemas import LOG_SCHEMA
from pipeline.state.store import partition_dir, replace_partition
from pipeline.window import Window

ROW_GROUP_ROWS = 65_536
BATCH_ROWS = 2_048


@dataclass
class _DayFiles:
    writer: pq.ParquetWriter | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)  # converted to Arrow every BATCH_ROWS
    batches: list[pa.RecordBatch] = field(default_factory=list)  # written as one row group
    buffered: int = 0
    parts: list[Path] = field(default_factory=list)


class Staging:
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
            path = self.folder(day_date(day)) / f"part-{len(files.parts)}.parquet"
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

    def swap_in(
        self, dropped: dict[str, int], window: Window, data_dir: Path, gateway_id: str
    ) -> list[Path]:
        """Finish each day's staged folder, then rename each into place; returns the partitions."""
        self.close()
        lo, hi = ceil_ms(window.start), ceil_ms(window.end)
        staged: list[tuple[Path, Path]] = []
        for day in window.days():
            number = day_number(day)
            files = self.days.get(number, _DayFiles())
            folder = self.folder(day)
            folder.mkdir(parents=True, exist_ok=True)
            gone = sorted(i for i, s in dropped.items() if s // DAY_MS == number)
            if gone:
                for part in files.parts:
                    _drop_ids(part, pa.array(gone, pa.string()))
            target = partition_dir(data_dir, gateway_id, day)
            if not window.covers_day(day) and target.exists():
                # Keep the rows of this day outside the window; the window's own rows are replaced.
                kept = folder / "part-kept.parquet"
                _copy_filtered(sorted(target.glob("*.parquet")), kept, lo, hi)
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
