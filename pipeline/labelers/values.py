"""Reading label values the way analysts write them, vectorised with polars.

Feedback: ``1``, ``+1``, ``-1`` (also ``1.0``), ``up``/``down``, ``thumbs_up``/``thumbs_down`` (also
with a space or a hyphen), ``good``/``bad``, ``positive``/``negative``, ``yes``/``no``, 👍/👎 (any skin
tone). Case and surrounding spaces do not matter. Score: a number 0..100, optionally with ``%``
(``85%``) or a decimal comma (``85,5``). Empty means "no opinion" for that field.

Every rejected value has a reason code from ``REASONS``; the codes are stable (they appear in reject
files, results and reports).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import polars as pl

POSITIVE = ("1", "+1", "1.0", "+1.0", "up", "thumbs_up", "good", "positive", "yes", "👍")
NEGATIVE = ("-1", "-1.0", "down", "thumbs_down", "bad", "negative", "no", "👎")
FEEDBACK_WORDS: dict[str, int] = {**dict.fromkeys(POSITIVE, 1), **dict.fromkeys(NEGATIVE, -1)}

# Reason codes, in the order they are checked: a row gets the first that applies.
REASONS = (
    "broken_quote",  # a quote opened in this line never closes properly: the line is read alone
    "too_many_fields",  # more non-empty cells than the header has columns
    "missing_key",  # no log id (and no join-key value)
    "bad_log_id",  # the id has spaces inside or is longer than MAX_ID_LENGTH
    "bad_feedback",  # a feedback value not in FEEDBACK_WORDS
    "bad_score",  # not a number in 0..100
    "no_label",  # neither feedback nor score
    "unknown_key",  # the join-key value (e.g. request_id) matches no extracted log
    "ambiguous_key",  # the join-key value matches several logs: rejected, not guessed
    "not_sent",  # an external labeler answered for a log it was not sent
)
MAX_ID_LENGTH = 256

# Emoji variation selector and skin-tone modifiers: 👍🏽 and 👍️ mean 👍.
_EMOJI_NOISE = "[\ufe0f\U0001f3fb-\U0001f3ff]"


def _clean(expr: pl.Expr) -> pl.Expr:
    """Trimmed text; empty -> null."""
    text = expr.cast(pl.String).str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text)


def feedback_exprs(column: str) -> tuple[pl.Expr, pl.Expr]:
    """(feedback as int8 or null, True where a value was given but is not a feedback value)."""
    text = _clean(pl.col(column))
    token = (
        text.str.to_lowercase()
        .str.replace_all(_EMOJI_NOISE, "")
        .str.replace_all(r"(\w)[\s\-]+(\w)", "${1}_${2}")
    )
    value = token.replace_strict(FEEDBACK_WORDS, default=None, return_dtype=pl.Int8)
    return value, text.is_not_null() & value.is_null()


def score_exprs(column: str) -> tuple[pl.Expr, pl.Expr]:
    """(score as float64 or null, True where a value was given but is not a number in 0..100)."""
    text = _clean(pl.col(column))
    number = (
        text.str.strip_suffix("%")
        .str.strip_chars()
        .str.replace(r"^(\d+),(\d+)$", "$1.$2")
        .cast(pl.Float64, strict=False)
    )
    valid = number.is_finite() & (number >= 0) & (number <= 100)
    value = pl.when(valid).then(number).otherwise(None)
    return value, text.is_not_null() & value.is_null()


def _parsed(series: pl.Series, parse: Callable[[str], tuple[pl.Expr, pl.Expr]]) -> pl.DataFrame:
    """(value, bad) for every row, parsing each distinct text once: a column of labels holds a
    handful of spellings however long it is, so the regex work is per spelling, not per row."""
    distinct = series.unique().to_frame("text")
    value, bad = parse("text")
    table = distinct.with_columns(value.alias("value"), bad.alias("bad"))
    return (
        series.to_frame("text")
        .join(table, on="text", how="left", maintain_order="left")
        .select("value", pl.col("bad").fill_null(False))
    )


def validate_labels(frame: pl.DataFrame) -> pl.DataFrame:
    """Parse and check string columns ``log_id``, ``feedback``, ``score`` (and optional
    ``reject``: an earlier reason). Returns the frame with ``log_id`` trimmed, ``feedback`` int8,
    ``score`` float64 and ``reject`` (reason code or null)."""
    fb = _parsed(frame["feedback"].cast(pl.String), feedback_exprs)
    sc = _parsed(frame["score"].cast(pl.String), score_exprs)
    frame = frame.with_columns(
        _clean(pl.col("log_id")).alias("log_id"),
        fb["value"].alias("feedback"),
        fb["bad"].alias("_bad_fb"),
        sc["value"].alias("score"),
        sc["bad"].alias("_bad_sc"),
    )
    key = pl.col("log_id")
    earlier = pl.col("reject") if "reject" in frame.columns else pl.lit(None, pl.String)
    reject = (
        pl.when(earlier.is_not_null())
        .then(earlier)
        .when(key.is_null())
        .then(pl.lit("missing_key"))
        .when(key.str.contains(r"\s") | (key.str.len_chars() > MAX_ID_LENGTH))
        .then(pl.lit("bad_log_id"))
        .when(pl.col("_bad_fb"))
        .then(pl.lit("bad_feedback"))
        .when(pl.col("_bad_sc"))
        .then(pl.lit("bad_score"))
        .when(pl.col("feedback").is_null() & pl.col("score").is_null())
        .then(pl.lit("no_label"))
        .otherwise(None)
    )
    return frame.with_columns(reject.alias("reject")).drop("_bad_fb", "_bad_sc")


def parse_feedback(values: Sequence[str | None]) -> list[int | None]:
    """Feedback values as -1/1/None (None for empty or unreadable). For tests and tools."""
    value, _ = feedback_exprs("v")
    frame = pl.DataFrame({"v": list(values)}, schema={"v": pl.String})
    return frame.select(value.alias("v"))["v"].to_list()


def parse_score(values: Sequence[str | None]) -> list[float | None]:
    """Score values as 0..100 floats or None. For tests and tools."""
    value, _ = score_exprs("v")
    frame = pl.DataFrame({"v": list(values)}, schema={"v": pl.String})
    return frame.select(value.alias("v"))["v"].to_list()
