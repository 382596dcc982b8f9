"""Helpers for the label / sample tests: a job, a run, and extracted logs on disk (LOG_SCHEMA)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from pipeline.config import JobConfig, load_job
from pipeline.emulator.seed import generate_logs
from pipeline.schemas import LOG_SCHEMA
from pipeline.state import store
from pipeline.window import Window

ACCOUNT = "0123456789abcdef0123456789abcdef"
DAY = date(2026, 11, 3)
WINDOW = Window(datetime(2026, 11, 3, tzinfo=UTC), datetime(2026, 11, 4, tzinfo=UTC))
NOW = datetime(2026, 11, 4, 6, 0, tzinfo=UTC)


def make_job(tmp_path: Path, extra: str = "") -> JobConfig:
    text = (
        f'[gateway]\naccount_id = "{ACCOUNT}"\ngateway_id = "gw"\nbase_url = "http://api.test"\n'
        f'[store]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[labels.csv]\ninbox = "{tmp_path / "inbox"}"\n' + extra
    )
    path = tmp_path / "job.toml"
    path.write_text(text, encoding="utf-8")
    return load_job(path, env={"CLOUDFLARE_API_TOKEN": "t0ken-for-tests"})


def make_run(job: JobConfig, window: Window = WINDOW) -> store.RunInfo:
    return store.create_run(job.store.data_dir, job.name, job.gateway.gateway_id, window, now=NOW)


def log_rows(entries: Iterable[Mapping[str, Any]]) -> pa.Table:
    """API log entries (as the emulator's generator makes them) -> a LOG_SCHEMA table."""
    known = set(LOG_SCHEMA.names)
    rows = []
    for e in entries:
        meta = e.get("metadata")
        row = {k: e.get(k) for k in known}
        row["created_at"] = datetime.fromisoformat(e["created_at"].replace("Z", "+00:00"))
        row["metadata"] = meta if meta is None or isinstance(meta, str) else json.dumps(meta)
        row["extra"] = None
        row["extracted_at"] = NOW
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=LOG_SCHEMA)


def sample_logs(n: int = 300, *, seed: int = 7, window: Window = WINDOW) -> list[dict[str, Any]]:
    return generate_logs(n, seed=seed, start=window.start, end=window.end)


def write_logs(job: JobConfig, entries: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Write entries into the data dir as the extract would (one partition per UTC day)."""
    table = log_rows(entries)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    for (day,), part in frame.group_by(pl.col("created_at").dt.date(), maintain_order=True):
        assert isinstance(day, date)
        path = store.partition_dir(job.store.data_dir, job.gateway.gateway_id, day)
        store.write_parquet_atomic(part.to_arrow().cast(LOG_SCHEMA), path / "part-0.parquet")
    return frame


def write_csv(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path
