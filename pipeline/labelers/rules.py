"""Rules from the job file: `[[labels.rules]]` with an SQL condition over the log columns.

    [[labels.rules]]
    name = "provider-errors"
    when = "status_code >= 500 OR success = false"
    feedback = -1                                     # a constant, or an SQL expression
    score = "CASE WHEN duration > 30000 THEN 0 ELSE 10 END"
    reason = "the provider failed"

`when`, and `feedback`/`score` when they are strings, are SQL expressions over the columns of the
extracted logs (LOG_SCHEMA: id, created_at, provider, model, status_code, duration, cost, tokens_in,
metadata — the API's JSON string, so `metadata LIKE '%"tier":"free"%'` — and the rest). They are
compiled by polars' SQL front end and evaluated vectorised, batch by batch as the window's Parquet
streams (the label stage never holds all the logs); nothing is passed to Python's eval. A rule that names an unknown column, does not parse, or gives the wrong type fails
when the job loads (`pipeline.sqlcheck`, called from `pipeline.config`), naming the rule and listing the
columns.

A rule labels the logs where `when` is true. A feedback expression must give -1 or 1 and a score
expression 0..100; other values (and nulls) mean "no opinion" for that field and are counted as
`invalid_feedback` / `invalid_score`.

A rule that aggregates over the logs (``duration > AVG(duration)``, ``MAX(...)``, a window function
``OVER (...)``) gives the right labels too, but it cannot be evaluated batch by batch: polars then
holds the columns that rule reads for the whole window (measured at 1M logs: 267 MB against 175 MB
for a row-wise rule over the same columns), so memory grows with the logs again. Each rule is its own source, ``rule:<name>``; when several rules
label a log, the one listed first in the job file wins (see `pipeline.label`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from pipeline.config import RuleConfig
from pipeline.ids import canonical_id_expr
from pipeline.labelers.base import (
    ROW,
    LabelContext,
    LabelerOutput,
    empty_labels,
    to_label_frame,
)
from pipeline.labelers.combine import Computed
from pipeline.schemas import LOG_SCHEMA

LOG_POLARS_SCHEMA = pl.Schema(LOG_SCHEMA)


def _expr(value: int | float | str | None, dtype: type[pl.DataType]) -> pl.Expr | None:
    if value is None:
        return None
    if isinstance(value, str):
        return pl.sql_expr(value).cast(dtype, strict=False)
    return pl.lit(value, dtype)


def compile_rule(rule: RuleConfig) -> tuple[pl.Expr, pl.Expr | None, pl.Expr | None]:
    """(when, feedback, score) polars expressions. Raises polars errors for bad SQL."""
    return (
        pl.sql_expr(rule.when),
        _expr(rule.feedback, pl.Int8),
        _expr(rule.score, pl.Float64),
    )


@dataclass(frozen=True)
class RuleColumns:
    """One rule as expressions over the log columns."""

    rule: RuleConfig
    matched: pl.Expr  # `when` is true (null is false)
    feedback: pl.Expr  # the valid feedback (-1/1) where matched, else null
    score: pl.Expr  # the valid score (0..100) where matched, else null
    labeled: pl.Expr  # matched and gives a valid feedback or score

    @property
    def source(self) -> str:
        return f"rule:{self.rule.name}"

    @property
    def reason(self) -> str:
        return self.rule.reason or f"rule {self.rule.name}: {self.rule.when}"


def rule_columns(
    rule: RuleConfig, compiled: tuple[pl.Expr, pl.Expr | None, pl.Expr | None]
) -> RuleColumns:
    when, feedback, score = compiled
    # `& id is not null` (always true) makes a constant condition (`when = "true"`) one per log.
    matched = pl.col("id").is_not_null() & when.fill_null(False)
    f = feedback if feedback is not None else pl.lit(None, pl.Int8)
    s = score if score is not None else pl.lit(None, pl.Float64)
    valid_f = pl.when(matched & f.is_in([-1, 1])).then(f).otherwise(None).cast(pl.Int8)
    valid_s = (
        pl.when(matched & s.is_finite() & (s >= 0) & (s <= 100))
        .then(s)
        .otherwise(None)
        .cast(pl.Float64)
    )
    labeled = matched & (valid_f.is_not_null() | valid_s.is_not_null())
    return RuleColumns(rule, matched, valid_f, valid_s, labeled)


class RulesLabeler:
    """All the job's rules, as expressions the stage evaluates while the window's logs stream by
    (`stats`, `labels`, `computed`); `label` runs them over a frame in memory."""

    kind = "rules"

    def __init__(
        self,
        rules: Sequence[RuleConfig],
        columns: Sequence[RuleColumns] | None = None,
        *,
        canonical_ids: bool = False,
    ) -> None:
        self.rules = tuple(rules)
        self.name = "rules"
        self.canonical_ids = canonical_ids  # the frames it reads hold ids canonical already
        self.columns = (
            list(columns)
            if columns is not None
            else [rule_columns(r, compile_rule(r)) for r in self.rules]
        )

    def evaluate(self, logs: pl.LazyFrame) -> pl.LazyFrame:
        """Every rule evaluated once over `logs` (numbered with `_row`): `_row`, `id` (in its
        canonical spelling, `pipeline.ids`), and per rule i its `_m<i>` matched, `_f<i>` valid
        feedback, `_s<i>` valid score. The stage sinks this narrow frame to a file in one
        streamed pass and reads it in every later pass (`evaluated`) instead of evaluating the
        rules' SQL (and the ids' spelling, a regular expression per log) over the logs again."""
        cols: list[pl.Expr] = []
        for i, c in enumerate(self.columns):
            cols += [
                c.matched.alias(f"_m{i}"),
                c.feedback.cast(pl.Int8).alias(f"_f{i}"),
                c.score.cast(pl.Float64).alias(f"_s{i}"),
            ]
        return logs.select(pl.col(ROW), canonical_id_expr(pl.col("id")).alias("id"), *cols)

    def evaluated(self) -> RulesLabeler:
        """The same rules as reads of the columns that `evaluate` gives: `stats`, `labels` and
        `computed` of the result run over that frame."""
        columns = []
        for i, c in enumerate(self.columns):
            m, f, s = pl.col(f"_m{i}"), pl.col(f"_f{i}"), pl.col(f"_s{i}")
            columns.append(RuleColumns(c.rule, m, f, s, m & (f.is_not_null() | s.is_not_null())))
        return RulesLabeler(self.rules, columns, canonical_ids=True)

    async def label(
        self, logs: pl.DataFrame | pl.LazyFrame, context: LabelContext
    ) -> LabelerOutput:
        return self.run(logs, context)

    def run(self, logs: pl.DataFrame | pl.LazyFrame, context: LabelContext) -> LabelerOutput:
        """Every rule's labels (LABEL_SCHEMA plus `_row`) and accounting, collected."""
        numbered = logs.lazy().with_row_index(ROW)
        stats = self.stats(numbered)
        labels = self.labels(numbered, context.now, stats).collect(engine="streaming")
        return LabelerOutput(labels, self.accounting(stats))

    def stats(self, logs: pl.LazyFrame) -> dict[str, dict[str, int]]:
        """Per rule: matched, invalid_feedback, invalid_score, labels (and, for `computed`,
        with_feedback/with_score), in one streamed pass over `logs`."""
        if not self.rules:
            return {}
        exprs: list[pl.Expr] = []
        for i, c in enumerate(self.columns):
            exprs += [
                c.matched.sum().alias(f"{i}|matched"),
                (c.matched & c.feedback.is_null()).sum().alias(f"{i}|invalid_feedback"),
                (c.matched & c.score.is_null()).sum().alias(f"{i}|invalid_score"),
                c.labeled.sum().alias(f"{i}|labels"),
                c.feedback.is_not_null().sum().alias(f"{i}|with_feedback"),
                c.score.is_not_null().sum().alias(f"{i}|with_score"),
            ]
        sums = logs.select(exprs).collect(engine="streaming").row(0, named=True)
        stats: dict[str, dict[str, int]] = {}
        for i, c in enumerate(self.columns):
            row = {k: int(sums[f"{i}|{k}"] or 0) for k in STAT_KEYS}
            if c.rule.feedback is None:
                row["invalid_feedback"] = 0
            if c.rule.score is None:
                row["invalid_score"] = 0
            stats[c.rule.name] = row
        return stats

    def labels(
        self, logs: pl.LazyFrame, now: datetime, stats: Mapping[str, Mapping[str, int]]
    ) -> pl.LazyFrame:
        """The label rows (LABEL_SCHEMA plus `_row`): rule by rule in the job file's order, each in
        the order of `logs` (numbered with `_row`). A rule that labels nothing (per `stats`) is
        not scanned again."""
        parts = [
            logs.filter(c.labeled).select(
                pl.col("id").alias("log_id"),
                pl.col(ROW),
                c.feedback.alias("feedback"),
                c.score.alias("score"),
                pl.lit(c.source).alias("source"),
                pl.lit(c.reason).alias("reason"),
            )
            for c in self.columns
            if stats.get(c.rule.name, {}).get("labels", 0)
        ]
        if not parts:
            return empty_labels().with_columns(pl.lit(None, pl.UInt32).alias(ROW)).lazy()
        return to_label_frame(
            pl.concat(parts, how="vertical_relaxed"), now, canonical=self.canonical_ids
        )

    def computed(self, now: datetime, stats: Mapping[str, Mapping[str, int]]) -> list[Computed]:
        """The rules that label something, as sources for `combine_streamed`."""
        return [
            Computed(
                c.source,
                c.labeled,
                c.feedback,
                c.score,
                c.reason,
                now,
                has_feedback=bool(stats[c.rule.name]["with_feedback"]),
                has_score=bool(stats[c.rule.name]["with_score"]),
            )
            for c in self.columns
            if stats.get(c.rule.name, {}).get("labels", 0)
        ]

    @staticmethod
    def accounting(stats: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
        """What the stage reports per rule (the keys it always had)."""
        keys = ("matched", "invalid_feedback", "invalid_score", "labels")
        return {"rules": {name: {k: row[k] for k in keys} for name, row in stats.items()}}


STAT_KEYS = (
    "matched",
    "invalid_feedback",
    "invalid_score",
    "labels",
    "with_feedback",
    "with_score",
)
