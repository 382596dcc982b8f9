"""Logs for analysts to review: a CSV with empty feedback/score columns, ready for the inbox.

    aigw-feedback sample jobs/nightly.toml --n 200 --out review.csv
    aigw-feedback sample jobs/nightly.toml --n 100 --out review.csv --where "status_code = 200" \\
        --stratify-by model --window 2026-11-01..2026-11-07 --seed 7

Reads the extracted logs (all extracted days, or those of ``--window``), keeps those matching
``--where`` (an SQL condition over the log columns, like a rule's ``when``), and draws ``n`` at
random, seeded (the same seed and data give the same file). ``--stratify-by COL`` spreads the
sample evenly over the values of a column (or of a metadata key: ``metadata.app``): each value gets
an equal share, and what a small group cannot fill goes to the others.

The file has ``log_id``, a few columns to judge by (time, provider, model, status, duration,
tokens, cost, metadata, the log's current feedback and score), then empty ``feedback``, ``score``
and ``reason`` columns. Fill in feedback and/or score, save as CSV, drop it into the job's inbox:
the CSV labeler reads it as is. Rows left empty count as ``no_label`` rejects and are listed in the
rejects file — finish those there and drop that file in later. Request and response heads are not
in the file: they cost one API request per log (the external labeler fetches them).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.config import JobConfig
from pipeline.errors import StageError, UsageError
from pipeline.labelers.base import utc_now
from pipeline.schemas import LOG_SCHEMA
from pipeline.sqlcheck import check_sql
from pipeline.state import store
from pipeline.window import Window, parse_window

LOG_POLARS_SCHEMA = pl.Schema(LOG_SCHEMA)
REVIEW_COLUMNS = (
    "created_at",
    "provider",
    "model",
    "status_code",
    "success",
    "cached",
    "duration",
    "tokens_in",
    "tokens_out",
    "cost",
    "metadata",
)


@dataclass(frozen=True)
class SampleResult:
    out: Path
    rows: int
    available: int  # logs that matched --window and --where
    strata: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "rows": self.rows,
            "available": self.available,
            "strata": self.strata,
        }

    def summary(self) -> str:
        text = f"wrote {self.rows:,} of {self.available:,} matching logs to {self.out}"
        if self.strata:
            text += " (" + ", ".join(f"{k} {v}" for k, v in self.strata.items()) + ")"
        return text + "; fill in feedback and/or score, then drop it into the job's inbox"


def sample(
    job: JobConfig,
    *,
    n: int,
    out: Path,
    where: str | None = None,
    stratify_by: str | None = None,
    window: str | Window | None = None,
    seed: int = 0,
    clock: Callable[[], datetime] = utc_now,
) -> SampleResult:
    """Write `n` extracted logs to `out` for review. UsageError for a bad --where/--stratify-by,
    StageError when nothing was extracted."""
    if n < 1:
        raise UsageError("--n must be at least 1")
    if isinstance(window, str):
        window = parse_window(window, now=clock(), lag_seconds=job.window.lag_seconds)
    logs = _read(job, window)
    if where:
        problem = check_sql(where, "condition")
        if problem is not None:
            raise UsageError(f"--where: {problem}")
        logs = logs.filter(pl.sql_expr(where).fill_null(False))
    logs = logs.sort("id").with_columns(
        pl.int_range(pl.len()).shuffle(seed=seed).alias("_key"),
    )
    strata: dict[str, int] = {}
    if stratify_by:
        logs = logs.with_columns(_stratum(stratify_by).alias("_group"))
        sizes = dict(logs.group_by("_group").len().sort("_group").iter_rows())
        quotas = equal_shares(sizes, n)
        quota = pl.col("_group").replace_strict(quotas, default=0, return_dtype=pl.Int64)
        picked = logs.filter(pl.col("_key").rank("ordinal").over("_group") <= quota)
        strata = {str(k): v for k, v in quotas.items() if v}
    else:
        picked = logs.filter(pl.col("_key") < n)
    review = picked.sort("created_at", "id").select(
        pl.col("id").alias("log_id"),
        *[pl.col(c) for c in REVIEW_COLUMNS],
        pl.col("feedback").alias("current_feedback"),
        pl.col("score").alias("current_score"),
        pl.lit(None, pl.String).alias("feedback"),
        pl.lit(None, pl.String).alias("score"),
        pl.lit(None, pl.String).alias("reason"),
    )
    buffer = io.StringIO()
    review.write_csv(buffer, datetime_format="%Y-%m-%dT%H:%M:%S%.3fZ")
    store.write_text_atomic(buffer.getvalue(), out)
    return SampleResult(out=out, rows=review.height, available=logs.height, strata=strata)


def equal_shares(sizes: dict[Any, int], n: int) -> dict[Any, int]:
    """Split n over groups as evenly as their sizes allow (water-filling): every group gets
    min(size, level), and what is left goes one each to the next groups in key order."""
    total = min(n, sum(sizes.values()))
    low, high = 0, max(sizes.values(), default=0)
    while low < high:  # the highest level whose fill fits in `total`
        mid = (low + high + 1) // 2
        if sum(min(s, mid) for s in sizes.values()) <= total:
            low = mid
        else:
            high = mid - 1
    quotas = {g: min(s, low) for g, s in sizes.items()}
    left = total - sum(quotas.values())
    for g in sorted((g for g in sizes if sizes[g] > low), key=str)[:left]:
        quotas[g] += 1
    return quotas


def _stratum(column: str) -> pl.Expr:
    if column.startswith("metadata."):
        key = column.removeprefix("metadata.").replace("'", "\\'")
        value = pl.col("metadata").str.json_path_match(f"$['{key}']")
    elif column in LOG_POLARS_SCHEMA.names():
        value = pl.col(column).cast(pl.String)
    else:
        raise UsageError(
            f"--stratify-by {column!r}: no such column; use one of "
            + ", ".join(LOG_POLARS_SCHEMA.names())
            + ", or metadata.<key>"
        )
    return value.fill_null("(none)")


def _read(job: JobConfig, window: Window | None) -> pl.DataFrame:
    gateway = job.gateway.gateway_id
    days = window.days() if window is not None else None
    files = store.log_files(job.store.data_dir, gateway, days)
    if not files:
        where = f" for {window}" if window is not None else ""
        raise StageError(
            f"no extracted logs{where} in {job.store.data_dir}: run `aigw-feedback extract` "
            "(or `run`) for that window first"
        )
    frame = pl.scan_parquet(files).select(LOG_POLARS_SCHEMA.names())
    if window is not None:
        frame = frame.filter(
            (pl.col("created_at") >= window.start) & (pl.col("created_at") < window.end)
        )
    return frame.unique("id", keep="first").collect()
