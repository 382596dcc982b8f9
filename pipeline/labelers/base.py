"""What every labeler is: a name, a kind, and `label(logs, context) -> LabelerOutput`.

A labeler reads the run window's logs (a polars frame with LOG_SCHEMA) and returns labels as a
LABEL_SCHEMA frame — one row per log it has an opinion on, `source` = ``<kind>:<name>`` — plus its own
accounting (rows read, accepted, rejected by reason...). Labelers never talk to each other: the label
stage runs them in order (csv, rules, external) and combines their outputs by precedence.

The stage streams the window's Parquet rather than hold every log: the CSV labeler is given only the
window's `id` column (for `_row`), the rules become expressions the stage evaluates as the logs stream
by (`RulesLabeler.computed`), and the external labeler reads a lazy scan (`pl.LazyFrame`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import polars as pl

from pipeline.ids import canonical_id_expr
from pipeline.schemas import LABEL_SCHEMA

if TYPE_CHECKING:
    from pipeline.gateway.client import LogsClient

Clock = Callable[[], datetime]
LABEL_POLARS_SCHEMA = pl.Schema(LABEL_SCHEMA)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class LabelContext:
    """What a labeler may know about the run besides the logs."""

    run_id: str
    now: datetime
    # What earlier labelers in this run labeled: their log ids, or (the streamed stage) a boolean
    # expression over the log columns that is true for those logs.
    labeled: pl.Series | pl.Expr | None = None
    client: LogsClient | None = None


# A labeler may add this UInt32 column to its labels: the position of each labeled log in the
# `logs` frame it was given. The label stage then skips a join on the (string) log id.
ROW = "_row"


@dataclass(frozen=True)
class LabelerOutput:
    labels: pl.DataFrame  # LABEL_SCHEMA columns, plus `_row` optionally
    accounting: dict[str, Any] = field(default_factory=dict)


class Labeler(Protocol):
    name: str
    kind: str  # "csv" | "rules" | "external": the names `[load] precedence` uses

    async def label(self, logs: pl.DataFrame, context: LabelContext) -> LabelerOutput: ...


def empty_labels() -> pl.DataFrame:
    return pl.DataFrame(schema=LABEL_POLARS_SCHEMA)


def labeled_at_expr(now: datetime) -> pl.Expr:
    """`now` as the labels' `labeled_at` (UTC, milliseconds)."""
    return pl.lit(now).dt.cast_time_unit("ms").dt.convert_time_zone("UTC")


Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def to_label_frame(frame: Frame, now: datetime, *, canonical: bool = False) -> Frame:
    """Columns log_id, feedback, score, source, reason (and `_row`, if there) -> a LABEL_SCHEMA
    frame (plus `_row`); lazy in, lazy out. `canonical`: the ids are in their canonical spelling
    already (not converted again: the conversion is a regular expression per row)."""
    row = [pl.col(ROW).cast(pl.UInt32)] if ROW in frame.collect_schema().names() else []
    log_id = pl.col("log_id").cast(pl.String)
    return frame.select(
        (log_id if canonical else canonical_id_expr(log_id)).alias("log_id"),
        pl.col("feedback").cast(pl.Int8),
        pl.col("score").cast(pl.Float64),
        pl.col("source").cast(pl.String),
        pl.col("reason").cast(pl.String),
        labeled_at_expr(now).alias("labeled_at"),
        *row,
    ).cast(LABEL_POLARS_SCHEMA)


def last_word_wins(accepted: pl.DataFrame, order: list[str]) -> pl.DataFrame:
    """For accepted rows sorted by `order`: `outcome` = label (the last row for its log), duplicate
    (an earlier row with the same label) or superseded (an earlier row with another label)."""
    accepted = accepted.sort(order)
    last_fb = pl.col("feedback").last().over("log_id")
    last_sc = pl.col("score").last().over("log_id")
    is_last = pl.int_range(pl.len()).over("log_id") == pl.len().over("log_id") - 1
    same = pl.col("feedback").eq_missing(last_fb) & pl.col("score").eq_missing(last_sc)
    return accepted.with_columns(
        outcome=pl.when(is_last)
        .then(pl.lit("label"))
        .when(same)
        .then(pl.lit("duplicate"))
        .otherwise(pl.lit("superseded"))
    )
