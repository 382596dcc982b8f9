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
compiled by polars' SQL front end and evaluated vectorised over the whole window; nothing is passed
to Python's eval. A rule that names an unknown column, does not parse, or gives the wrong type fails
when the job loads (`pipeline.sqlcheck`, called from `pipeline.config`), naming the rule and listing the
columns.

A rule labels the logs where `when` is true. A feedback expression must give -1 or 1 and a score
expression 0..100; other values (and nulls) mean "no opinion" for that field and are counted as
`invalid_feedback` / `invalid_score`. Each rule is its own source, ``rule:<name>``; when several rules
label a log, the one listed first in the job file wins (see `pipeline.label`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from pipeline.config import RuleConfig
from pipeline.labelers.base import (
    ROW,
    LabelContext,
    LabelerOutput,
    empty_labels,
    to_label_frame,
)
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


class RulesLabeler:
    """All the job's rules, evaluated in one pass over the window's logs."""

    kind = "rules"

    def __init__(self, rules: Sequence[RuleConfig]) -> None:
        self.rules = tuple(rules)
        self.name = "rules"
        self._compiled = [compile_rule(r) for r in self.rules]

    async def label(self, logs: pl.DataFrame, context: LabelContext) -> LabelerOutput:
        return self.run(logs, context)

    def run(self, logs: pl.DataFrame, context: LabelContext) -> LabelerOutput:
        if not self.rules:
            return LabelerOutput(empty_labels(), {"rules": {}})
        numbered = logs.lazy().with_row_index(ROW)
        queries = []
        for rule, (when, feedback, score) in zip(self.rules, self._compiled, strict=True):
            fb = feedback if feedback is not None else pl.lit(None, pl.Int8)
            sc = score if score is not None else pl.lit(None, pl.Float64)
            queries.append(
                numbered.filter(when.fill_null(False)).select(
                    pl.col("id").alias("log_id"),
                    pl.col(ROW),
                    fb.alias("f"),
                    sc.alias("s"),
                    pl.lit(f"rule:{rule.name}").alias("source"),
                    pl.lit(rule.reason or f"rule {rule.name}: {rule.when}").alias("reason"),
                )
            )
        stats: dict[str, dict[str, Any]] = {}
        parts: list[pl.DataFrame] = []
        for rule, matched in zip(self.rules, pl.collect_all(queries), strict=True):
            f, s = pl.col("f"), pl.col("s")
            checked = matched.with_columns(
                pl.when(f.is_in([-1, 1])).then(f).otherwise(None).alias("feedback"),
                pl.when(s.is_finite() & (s >= 0) & (s <= 100))
                .then(s)
                .otherwise(None)
                .alias("score"),
            )
            labels = checked.filter(
                pl.col("feedback").is_not_null() | pl.col("score").is_not_null()
            )
            stats[rule.name] = {
                "matched": matched.height,
                "invalid_feedback": checked["feedback"].null_count()
                if rule.feedback is not None
                else 0,
                "invalid_score": checked["score"].null_count() if rule.score is not None else 0,
                "labels": labels.height,
            }
            parts.append(labels.drop("f", "s"))
        frame = pl.concat(parts, how="vertical_relaxed")
        return LabelerOutput(to_label_frame(frame, context.now), {"rules": stats})
