"""Review sheets at scale: a 10,000-row review frame written as xlsx, against two baselines.

    .venv/bin/python bench/bench_sheets.py [--rows 10000]

What is timed (each the best of 3, in this process):
  xlsx        `pipeline.sheets.write_xlsx`: neutralise and scrub, one styled string cell per text,
              dropdown and score check, frozen panes, atomic write.
  plain xlsx  openpyxl's write-only workbook given the same rows as bare values (no styles, no
              neutralising, no validation): the floor for any openpyxl writer.
  csv         `pipeline.sheets.write_csv` of the same frame (polars).
The frame looks like `sample` output: 1,000-character request and response texts, metadata,
numbers, a date-time. The ratios say what the formatting costs over the floor and over CSV.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from openpyxl import Workbook

from pipeline.sheets import write_csv, write_xlsx


def frame(rows: int) -> pl.DataFrame:
    words = "the quick brown fox jumps over the lazy dog and asks about a refund for order 4411 "
    text = (words * 13)[:1000]
    start = datetime(2026, 11, 3, tzinfo=UTC)
    return pl.DataFrame(
        {
            "log_id": [f"01JADMCQQQBWH3NXZ5G{i:07d}" for i in range(rows)],
            "request_text": [("=" if i % 100 == 0 else "") + text for i in range(rows)],
            "response_text": [text] * rows,
            "feedback": [None] * rows,
            "score": [None] * rows,
            "reason": [None] * rows,
            "created_at": [start + timedelta(seconds=i) for i in range(rows)],
            "provider": ["openai"] * rows,
            "model": ["gpt-4o-mini"] * rows,
            "status_code": [200] * rows,
            "success": [True] * rows,
            "cached": [False] * rows,
            "duration": list(range(rows)),
            "tokens_in": [180] * rows,
            "tokens_out": [220] * rows,
            "cost": [0.00012] * rows,
            "metadata": ['{"app":"support-bot","user":"u_0042"}'] * rows,
            "current_feedback": [None] * rows,
            "current_score": [None] * rows,
        },
        schema_overrides={
            "feedback": pl.String,
            "score": pl.String,
            "reason": pl.String,
            "current_feedback": pl.Int8,
            "current_score": pl.Float64,
        },
    )


def plain_xlsx(review: pl.DataFrame, out: Path) -> None:
    book = Workbook(write_only=True)
    sheet = book.create_sheet("review")
    sheet.append(review.columns)
    for row in review.with_columns(pl.col(pl.Datetime).dt.replace_time_zone(None)).iter_rows():
        sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    out.write_bytes(buffer.getvalue())


def best(work: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    review = frame(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        xlsx = best(lambda: write_xlsx(review, folder / "review.xlsx"))
        plain = best(lambda: plain_xlsx(review, folder / "plain.xlsx"))
        csv = best(lambda: write_csv(review, folder / "review.csv"))
        size = (folder / "review.xlsx").stat().st_size
    print(f"rows: {args.rows:,} ({len(review.columns)} columns, 1,000-character texts)")
    print(
        f"xlsx (pipeline.sheets):  {xlsx:6.2f} s  ({args.rows / xlsx:,.0f} rows/s, {size:,} bytes)"
    )
    print(f"plain openpyxl xlsx:     {plain:6.2f} s  -> formatting costs {xlsx / plain:.2f}x")
    print(f"csv (pipeline.sheets):   {csv:6.2f} s  -> xlsx is {xlsx / csv:.0f}x the CSV's time")


if __name__ == "__main__":
    main()
