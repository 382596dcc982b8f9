"""Verify: read back every log the load patched and compare it with what was sent.

Reads go in batches of 50 (a list request with an ``id`` filter), with a GET only for ids a batch did
not return — 10,000 patched logs cost about 200 requests, not 10,000. Each field the PATCH body carried
(feedback, score, metadata) is compared with the read-back:

    verified      every sent field reads back equal
    mismatched    some field reads back different, still after the re-checks
    unverifiable  the response does not carry a sent field at all: "cannot tell", never "verified"
    gone          the log no longer exists (deleted, or aged out, after its PATCH was acknowledged):
                  nothing is left to label, so like a 404 at load time it does not count against
                  the run

Writes can become visible late (read-after-write lag), so mismatches are read again after
``verify.recheck_wait`` seconds, up to ``verify.recheck_attempts`` times. Time is injected: ``sleep``
for the waits and ``clock`` for the timings.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa

from pipeline.config import JobConfig
from pipeline.gateway.client import LogsClient
from pipeline.gateway.lookup import canonical_metadata, entries_frame, lookup_logs
from pipeline.result import StageResult
from pipeline.schemas import SCORE_TOLERANCE
from pipeline.state import store
from pipeline.state.journal import Journal
from pipeline.state.store import RunInfo
from pipeline.timefmt import iso

MAX_LISTED_MISMATCHES = 200

VERIFY_SCHEMA = pa.schema(
    [
        pa.field("log_id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # verified | mismatched | unverifiable
        pa.field("reason", pa.string()),
        pa.field("checks", pa.int32(), nullable=False),  # read-backs it took
        pa.field("expected_feedback", pa.int8()),
        pa.field("actual_feedback", pa.int8()),
        pa.field("expected_score", pa.float64()),
        pa.field("actual_score", pa.float64()),
        pa.field("expected_metadata", pa.string()),
        pa.field("actual_metadata", pa.string()),
    ]
)


@dataclass(frozen=True)
class VerifyResult(StageResult):
    run_id: str
    checked: int
    verified: int
    mismatched: int
    unverifiable: int
    requests: int
    rechecks: int  # extra read-back rounds for mismatches
    seconds: float
    started_at: str
    finished_at: str
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    gone: int = 0  # patched logs that no longer exist on read-back
    rate_limited_by: dict[str, int] = field(default_factory=dict)  # 429s by limiter code
    timeline: list[list[int]] = field(default_factory=list)  # [epoch second, requests]

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    @property
    def ok(self) -> bool:
        return self.mismatched == 0 and self.unverifiable == 0

    def summary(self) -> str:
        return (
            f"verify {self.run_id}: {self.verified}/{self.checked} verified, "
            f"{self.mismatched} mismatched, {self.unverifiable} unverifiable, {self.gone} gone; "
            f"{self.requests} requests, {self.rechecks} re-check rounds"
        )


def expected_frame(run: RunInfo, done_ids: list[str]) -> pl.DataFrame:
    """What was sent to each done log, one column per field, and which fields were sent."""
    path = store.require(run.paths.plan, "plan", run.run_id)
    plan = (
        pl.read_parquet(path, columns=["log_id", "action", "body"])
        .filter((pl.col("action") == "patch") & pl.col("log_id").is_in(done_ids))
        .select("log_id", "body")
    )
    rows = []
    for log_id, text in plan.iter_rows():  # parsing the sent JSON bodies: per-row by nature
        body = json.loads(text)
        rows.append(
            {
                "log_id": log_id,
                "expected_feedback": body.get("feedback"),
                "expected_score": body.get("score"),
                "expected_metadata": canonical_metadata(body.get("metadata")),
                "sent_feedback": "feedback" in body,
                "sent_score": "score" in body,
                "sent_metadata": "metadata" in body,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "log_id": pl.String,
            "expected_feedback": pl.Int8,
            "expected_score": pl.Float64,
            "expected_metadata": pl.String,
            "sent_feedback": pl.Boolean,
            "sent_score": pl.Boolean,
            "sent_metadata": pl.Boolean,
        },
    )


def classify(expected: pl.DataFrame, actual: pl.DataFrame) -> pl.DataFrame:
    """Compare, vectorised. ``actual`` is ``entries_frame`` of the read-back (missing ids: absent)."""
    got = actual.select(
        pl.col("id").alias("log_id"),
        pl.col("feedback").alias("actual_feedback"),
        pl.col("score").alias("actual_score"),
        pl.col("metadata").alias("actual_metadata"),
        "has_feedback",
        "has_score",
        "has_metadata",
        pl.lit(True).alias("found"),
    ).unique("log_id", keep="last")
    df = expected.join(got, on="log_id", how="left").with_columns(pl.col("found").fill_null(False))

    checks = []
    for name, equal in (
        ("feedback", pl.col("expected_feedback").eq_missing(pl.col("actual_feedback"))),
        (
            "score",
            pl.col("actual_score").is_not_null()
            & ((pl.col("expected_score") - pl.col("actual_score")).abs() <= SCORE_TOLERANCE),
        ),
        ("metadata", pl.col("expected_metadata").eq_missing(pl.col("actual_metadata"))),
    ):
        sent, has = pl.col(f"sent_{name}"), pl.col(f"has_{name}").fill_null(False)
        differs = sent & has & ~equal.fill_null(False)
        unknown = sent & ~has
        checks.append((name, differs, unknown))

    any_differs = pl.any_horizontal([c[1] for c in checks])
    any_unknown = pl.any_horizontal([c[2] for c in checks])
    differ_reason = pl.concat_str(
        [
            pl.when(differs).then(
                pl.format(
                    "{} sent {} read {}",
                    pl.lit(name),
                    pl.col(f"expected_{name}").cast(pl.String).fill_null("null"),
                    pl.col(f"actual_{name}").cast(pl.String).fill_null("null"),
                )
            )
            for name, differs, _ in checks
        ],
        separator="; ",
        ignore_nulls=True,
    )
    unknown_reason = pl.concat_str(
        [pl.when(unknown).then(pl.lit(name)) for name, _, unknown in checks],
        separator=", ",
        ignore_nulls=True,
    )
    return df.with_columns(
        status=pl.when(~pl.col("found"))
        .then(pl.lit("gone"))
        .when(any_differs)
        .then(pl.lit("mismatched"))
        .when(any_unknown)
        .then(pl.lit("unverifiable"))
        .otherwise(pl.lit("verified")),
        reason=pl.when(~pl.col("found"))
        .then(pl.lit("the log no longer exists (deleted after its PATCH was acknowledged)"))
        .when(any_differs)
        .then(differ_reason)
        .when(any_unknown)
        .then(pl.format("the API response has no {} field", unknown_reason))
        .otherwise(pl.lit(None, dtype=pl.String)),
    )


async def verify(
    job: JobConfig,
    run: RunInfo,
    *,
    client: LogsClient,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> VerifyResult:
    """Read back every done log of the run; write ``verify.parquet`` and ``verify.result.json``."""
    started = clock()
    with Journal.open(job.store.data_dir, run.run_id) as journal:
        done_ids = [r.log_id for r in journal.rows(["done"])]
    expected = expected_frame(run, done_ids)
    before = client.stats.requests
    limiters0 = Counter(client.stats.rate_limited_by)
    seconds0 = Counter(client.stats.per_second)
    settled: list[pl.DataFrame] = []
    todo = expected
    checks = 0
    rounds = 0
    while todo.height:
        if checks > 0:
            rounds += 1
            await sleep(job.verify.recheck_wait_seconds)
        checks += 1
        ids = todo.get_column("log_id").to_list()
        # A server that does not list feedback is read back by GET, one per log: never "verified"
        # (nor "mismatched") from a response that does not carry the field.
        found = await lookup_logs(
            client, ids, concurrency=job.budget.concurrency, need_feedback=True, max_gets=None
        )
        judged = classify(todo, entries_frame(found.entries.values())).with_columns(
            checks=pl.lit(checks, dtype=pl.Int32)
        )
        last_round = checks > job.verify.recheck_attempts
        again = pl.col("status") == "mismatched"
        settled.append(judged if last_round else judged.filter(~again))
        todo = (
            todo.head(0) if last_round else todo.join(judged.filter(again), on="log_id", how="semi")
        )

    verified = pl.concat(settled) if settled else classify(expected, entries_frame([])).head(0)
    if "checks" not in verified.columns:
        verified = verified.with_columns(checks=pl.lit(0, dtype=pl.Int32))
    verified = verified.sort("log_id")
    table = verified.select(VERIFY_SCHEMA.names).to_arrow().cast(VERIFY_SCHEMA)
    store.write_parquet_atomic(table, run.paths.verify)

    counts = dict(verified.group_by("status").len().iter_rows())
    finished = clock()
    result = VerifyResult(
        run_id=run.run_id,
        checked=verified.height,
        verified=counts.get("verified", 0),
        mismatched=counts.get("mismatched", 0),
        unverifiable=counts.get("unverifiable", 0),
        gone=counts.get("gone", 0),
        requests=client.stats.requests - before,
        rate_limited_by=dict(client.stats.rate_limited_by - limiters0),
        timeline=client.stats.timeline_since(seconds0),
        rechecks=rounds,
        seconds=round(finished - started, 3),
        started_at=iso(started),
        finished_at=iso(finished),
        mismatches=verified.filter(pl.col("status") != "verified")
        .select("log_id", "status", "reason")
        .head(MAX_LISTED_MISMATCHES)
        .to_dicts(),
    )
    store.write_json_atomic(result.to_json(), run.paths.stage_result("verify"))
    return result
