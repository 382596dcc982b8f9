"""Logs for analysts to review: a CSV or Excel sheet with the prompt, the answer and empty
feedback/score columns, ready for the inbox.

    aigw-feedback sample jobs/nightly.toml --n 200 --out review.xlsx
    aigw-feedback sample jobs/nightly.toml --n 100 --out review.csv --where "status_code = 200" \\
        --stratify-by model --window 2026-11-01..2026-11-07 --seed 7

Reads the extracted logs (all extracted days, or those of ``--window``), keeps those matching
``--where`` (an SQL condition over the log columns, like a rule's ``when``), and draws ``n`` at
random, seeded (the same seed and data give the same logs). ``--stratify-by COL`` spreads the
sample evenly over the values of a column (or of a metadata key: ``metadata.app``): each value gets
an equal share, and what a small group cannot fill goes to the others.

The text to judge by is not in the extract: list entries carry no bodies. One GET per sampled log
returns its request and response heads (``pipeline.gateway.lookup.get_each``, paced by the job's
request budget); ``pipeline.heads`` turns them into the last user turn and the assistant's
answer. Before the first GET, ``on_plan`` is told what it costs (``TextPlan``: requests and time
at the budget); ``dry_run`` stops there and writes nothing; ``text=False`` sends nothing and
leaves the text columns out. A log deleted since the extract, or one the budget's cap left
unfetched, gets a note in place of its text.

The sheet (``pipeline.sheets``) has ``log_id``, the request and response text, the empty
``feedback``, ``score`` and ``reason`` columns, then the context (time, provider, model, status,
duration, tokens, cost, metadata, the log's current feedback and score). Fill in feedback and/or
score and drop the file into the job's inbox as it is. Rows left empty count as ``no_label``
rejects and are listed in the rejects file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.config import JobConfig
from pipeline.errors import StageError, UsageError
from pipeline.gateway import open_client
from pipeline.gateway.client import LogsClient
from pipeline.gateway.lookup import get_each
from pipeline.heads import TEXT_CHARS, request_text, response_text
from pipeline.labelers.base import utc_now
from pipeline.schemas import LOG_SCHEMA
from pipeline.sheets import SheetFormat, sheet_format, write_review
from pipeline.sqlcheck import check_sql
from pipeline.state import store
from pipeline.timefmt import human
from pipeline.window import Window, parse_window

LOG_POLARS_SCHEMA = pl.Schema(LOG_SCHEMA)
CONTEXT_COLUMNS = (
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
NOT_FOUND_TEXT = "(this log is no longer on the gateway: deleted since the extract)"
UNFETCHED_TEXT = "(not fetched: the job's request budget ran out first)"


@dataclass(frozen=True)
class TextPlan:
    """What the text costs before it is fetched: one GET per sampled log, at the job's budget."""

    logs: int
    requests: int  # what will be sent: one per log, or fewer when the job caps its requests
    rate_per_second: float
    seconds: float
    max_requests: int | None = None

    @classmethod
    def for_job(cls, job: JobConfig, logs: int) -> TextPlan:
        cap = job.budget.max_requests
        requests = logs if cap is None else min(logs, cap)
        rate = job.budget.rate_per_second
        return cls(logs, requests, rate, requests / rate if rate > 0 else 0.0, cap)

    def to_json(self) -> dict[str, Any]:
        return {
            "logs": self.logs,
            "requests": self.requests,
            "rate_per_second": self.rate_per_second,
            "seconds": round(self.seconds, 3),
            "max_requests": self.max_requests,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TextPlan:
        return cls(
            logs=data["logs"],
            requests=data["requests"],
            rate_per_second=data["rate_per_second"],
            seconds=data["seconds"],
            max_requests=data["max_requests"],
        )

    def summary(self) -> str:
        text = (
            f"fetching the request and response text of {self.logs:,} logs: "
            f"{self.requests:,} GET requests (one per log), about {human(self.seconds)} at "
            f"{self.rate_per_second:.2f} requests/s (the job's budget)"
        )
        if self.requests < self.logs:
            text += (
                f"; the job's max_requests ({self.max_requests:,}) stops it there, "
                f"{self.logs - self.requests:,} logs go without text"
            )
        return text


@dataclass(frozen=True)
class SampleResult:
    out: Path
    rows: int
    available: int  # logs that matched --window and --where
    strata: dict[str, int] = field(default_factory=dict)
    format: SheetFormat = "csv"
    text: TextPlan | None = None  # None: --no-text
    requests: int = 0  # the GETs actually sent (retries included)
    not_found: int = 0  # logs deleted since the extract
    unfetched: int = 0  # logs the budget's cap left without text
    dry_run: bool = False

    @property
    def exit_code(self) -> int:
        return 0

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "rows": self.rows,
            "available": self.available,
            "strata": self.strata,
            "format": self.format,
            "text": self.text.to_json() if self.text is not None else None,
            "requests": self.requests,
            "not_found": self.not_found,
            "unfetched": self.unfetched,
            "dry_run": self.dry_run,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SampleResult:
        text = data["text"]
        return cls(
            out=Path(data["out"]),
            rows=data["rows"],
            available=data["available"],
            strata=dict(data["strata"]),
            format=data["format"],
            text=TextPlan.from_json(text) if text is not None else None,
            requests=data["requests"],
            not_found=data["not_found"],
            unfetched=data["unfetched"],
            dry_run=data["dry_run"],
        )

    def summary(self) -> str:
        strata = ""
        if self.strata:
            strata = " (" + ", ".join(f"{k} {v}" for k, v in self.strata.items()) + ")"
        if self.dry_run:
            cost = f"; {self.text.summary()}" if self.text is not None else ""
            return (
                f"dry run: would write {self.rows:,} of {self.available:,} matching logs{strata} "
                f"to {self.out} ({self.format}){cost}. Nothing was sent or written."
            )
        text = f"wrote {self.rows:,} of {self.available:,} matching logs{strata} to {self.out}"
        if self.text is None:
            text += f" ({self.format}, without request and response text)"
        else:
            text += f" ({self.format}, with request and response text: {self.requests:,} requests"
            if self.not_found:
                text += f"; {self.not_found:,} logs no longer on the gateway"
            if self.unfetched:
                text += f"; {self.unfetched:,} left without text when the budget ran out"
            text += ")"
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
    fmt: str | None = None,
    text: bool = True,
    dry_run: bool = False,
    text_chars: int = TEXT_CHARS,
    on_plan: Callable[[TextPlan], None] | None = None,
    open_api: Callable[[], LogsClient] | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> SampleResult:
    """Write `n` extracted logs to `out` for review, with their text unless `text` is False.

    ``on_plan`` hears what the text will cost before any request; ``open_api`` opens the client
    (default: the job's, with its budget). UsageError for a bad --where/--stratify-by/--format,
    StageError when nothing was extracted; API errors (a refused token) as they come."""
    if n < 1:
        raise UsageError("--n must be at least 1")
    if text_chars < 1:
        raise UsageError("--text-chars must be at least 1")
    form = sheet_format(out, fmt)
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
    picked = picked.sort("created_at", "id")
    plan = TextPlan.for_job(job, picked.height) if text else None
    result = SampleResult(
        out=out,
        rows=picked.height,
        available=logs.height,
        strata=strata,
        format=form,
        text=plan,
        dry_run=dry_run,
    )
    if plan is not None and on_plan is not None:
        on_plan(plan)
    if dry_run:
        return result
    texts: pl.DataFrame | None = None
    if plan is not None:
        opener = open_api or (lambda: open_client(job))
        fetched = asyncio.run(_fetch_texts(opener, picked["id"].to_list(), job, text_chars))
        texts = fetched.frame
        result = _with_counts(result, fetched)
    write_review(review_frame(picked, texts), out, form)
    return result


def review_frame(picked: pl.DataFrame, texts: pl.DataFrame | None) -> pl.DataFrame:
    """The sheet's columns in order: id, texts (when fetched), editable, context."""
    frame = picked.select(
        pl.col("id").alias("log_id"),
        *[pl.col(c) for c in CONTEXT_COLUMNS],
        pl.col("feedback").alias("current_feedback"),
        pl.col("score").alias("current_score"),
    )
    editable = [pl.lit(None, pl.String).alias(c) for c in ("feedback", "score", "reason")]
    context = [*CONTEXT_COLUMNS, "current_feedback", "current_score"]
    if texts is None:
        return frame.select("log_id", *editable, *context)
    frame = frame.join(texts, on="log_id", how="left", maintain_order="left")
    return frame.select("log_id", "request_text", "response_text", *editable, *context)


@dataclass(frozen=True)
class _Fetched:
    frame: pl.DataFrame  # log_id, request_text, response_text: one row per asked id
    requests: int
    not_found: int
    unfetched: int


def _with_counts(result: SampleResult, fetched: _Fetched) -> SampleResult:
    return replace(
        result,
        requests=fetched.requests,
        not_found=fetched.not_found,
        unfetched=fetched.unfetched,
    )


async def _fetch_texts(
    opener: Callable[[], LogsClient], ids: list[str], job: JobConfig, limit: int
) -> _Fetched:
    """One GET per id through the job's budget; the heads as readable text."""
    async with opener() as client:
        before = client.stats.requests
        got = await get_each(client, ids, concurrency=job.budget.concurrency, stop_on_budget=True)
        spent = client.stats.requests - before
    rows = []
    for log_id in ids:  # one entry per GET, as Python objects already: read them as they are
        entry = got.entries.get(log_id)
        if entry is None:
            note = NOT_FOUND_TEXT if log_id in got.missing else UNFETCHED_TEXT
            rows.append((log_id, note, note))
            continue
        rows.append(
            (
                log_id,
                request_text(
                    entry.get("request_head"),
                    complete=entry.get("request_head_complete", True),
                    size=entry.get("request_size"),
                    limit=limit,
                ),
                response_text(
                    entry.get("response_head"),
                    complete=entry.get("response_head_complete", True),
                    size=entry.get("response_size"),
                    limit=limit,
                ),
            )
        )
    frame = pl.DataFrame(
        rows,
        schema={"log_id": pl.String, "request_text": pl.String, "response_text": pl.String},
        orient="row",
    )
    unfetched = len(ids) - len(got.entries) - len(got.missing)
    return _Fetched(frame, spent, len(got.missing), unfetched)


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
