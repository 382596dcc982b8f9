"""Checking the SQL a user writes (rule conditions and values, `sample --where`) before it runs.

An SQL expression is evaluated by Polars over the extracted log columns (LOG_SCHEMA). Checking it
against an empty frame of that schema finds an unknown column, SQL that does not parse, and a
condition that is not true/false when the job file is read, not at 2 a.m. halfway through a run.
"""

from __future__ import annotations

from typing import Literal

Want = Literal["condition", "number"]


def check_sql(text: str, want: Want) -> str | None:
    """None if ``text`` is usable as ``want``, else what is wrong, in one sentence that lists
    the columns there are."""
    import polars as pl  # only when a job has rules: `aigw-feedback --help` stays light

    from pipeline.schemas import LOG_SCHEMA  # pyarrow, likewise

    schema = pl.Schema(LOG_SCHEMA)
    columns = ", ".join(schema.names())
    try:
        dtype = pl.DataFrame(schema=schema).select(pl.sql_expr(text).alias("v")).schema["v"]
    except pl.exceptions.ColumnNotFoundError as exc:
        missing = str(exc).split('"')[1] if '"' in str(exc) else str(exc)
        return f"unknown column {missing!r} in {text!r}; available columns: {columns}"
    except Exception as exc:  # polars raises several types for bad SQL
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"{text!r} is not a valid SQL expression ({first}); available columns: {columns}"
    if want == "condition" and dtype != pl.Boolean:
        return f"`when` must be a condition (true/false), but {text!r} gives {dtype}"
    if want == "number" and not (dtype.is_numeric() or dtype == pl.Null):
        return f"{text!r} must give a number, but gives {dtype}"
    return None
