"""Label stage at scale: 1M logs × 20 rules plus a 100k-row analysts' CSV, against a Python loop.

    .venv/bin/python bench/bench_label.py [--logs 1000000] [--csv-rows 100000] [--loop-fraction 0.1]

What is timed:
  vectorised   the whole `pipeline.label.label` stage as a nightly run calls it: read the window's
               Parquet, CSV inbox (read, validate, move, manifest, rejects file), 20 SQL rules,
               choose by precedence, analysis, write labels/chosen/analysis.
  loop         the same work written as a plain row-by-row Python script would: the 20 rules as
               Python lambdas over dict rows, the CSV through csv.DictReader with dict lookups,
               precedence and conflict counting in dicts. Run on a fraction of the data (default
               10%) and scaled linearly to the full size — it says so in the output. Reading the
               Parquet into dicts is NOT counted against the loop.
  rules alone  the 20 rules only, vectorised (RulesLabeler on the frame in memory) vs the loop's
               rule part: the compute both sides share, without files or analysis.
Goal: vectorised ≤ 5 s for 1M logs and ≥ 50× the loop's rows/s. Peak RSS is the process's
maximum resident set (ru_maxrss) of a fresh process that runs only the stage (the interpreter
and polars included).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.config import load_job
from pipeline.label import label
from pipeline.labelers.base import LabelContext
from pipeline.labelers.rules import RulesLabeler
from pipeline.schemas import LOG_SCHEMA
from pipeline.state import store
from pipeline.window import Window

DAY = date(2026, 11, 3)
WINDOW = Window(datetime(2026, 11, 3, tzinfo=UTC), datetime(2026, 11, 4, tzinfo=UTC))
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-3-5-haiku", "gemini-2.0-flash", "llama-3.1-8b"]
PROVIDERS = ["openai", "openai", "anthropic", "google-ai-studio", "workers-ai"]
APPS = ["support-bot", "search", "summarizer", "code-assist", "sales-email"]

# (name, when, feedback, score) — SQL for the pipeline; the same logic as Python for the loop.
RULES: list[tuple[str, str, Any, Any]] = [
    ("server-errors", "status_code >= 500", -1, None),
    ("rate-limited", "status_code = 429", -1, 5),
    ("failed", "success = false", -1, None),
    ("very-slow", "duration > 20000", None, 10),
    ("slow", "duration > 8000 AND duration <= 20000", None, 40),
    ("empty-answer", "success AND tokens_out = 0 AND model_type = 'text-generation'", -1, 0),
    ("tiny-answer", "success AND tokens_out < 5", None, 20),
    ("pricey", "cost > 0.05", None, "GREATEST(0, 100 - cost * 500)"),
    ("cached-ok", "cached AND success", 1, 90),
    ("fast-ok", "success AND duration < 300", 1, None),
    ("support-bot", "metadata LIKE '%support-bot%' AND success", None, 70),
    ("search-long", 'metadata LIKE \'%"app":"search"%\' AND tokens_in > 3000', None, 45),
    (
        "gpt4o",
        "model = 'gpt-4o' AND success",
        None,
        "CASE WHEN duration < 2000 THEN 85 ELSE 65 END",
    ),
    ("haiku-fast", "model = 'claude-3-5-haiku' AND duration < 800", 1, None),
    ("workers", "provider = 'workers-ai' AND NOT success", -1, None),
    ("big-prompt", "tokens_in > 6000", None, 50),
    ("long-answer", "tokens_out > 1500", None, 75),
    ("cheap-ok", "cost < 0.0001 AND success", 1, None),
    ("step-retry", "step > 0", None, 55),
    (
        "mixed",
        "success AND duration BETWEEN 1000 AND 1200",
        "CASE WHEN tokens_out > 100 THEN 1 ELSE -1 END",
        None,
    ),
]


def py_rules() -> list[tuple[str, Any, Any, Any]]:
    """The RULES above as Python: (name, when(row), feedback(row), score(row))."""

    def c(v: Any) -> Any:
        return lambda r: v

    def gt(a: Any, b: float) -> bool:
        return a is not None and a > b

    def lt(a: Any, b: float) -> bool:
        return a is not None and a < b

    return [
        ("server-errors", lambda r: gt(r["status_code"], 499), c(-1), c(None)),
        ("rate-limited", lambda r: r["status_code"] == 429, c(-1), c(5)),
        ("failed", lambda r: r["success"] is False, c(-1), c(None)),
        ("very-slow", lambda r: gt(r["duration"], 20000), c(None), c(10)),
        ("slow", lambda r: gt(r["duration"], 8000) and r["duration"] <= 20000, c(None), c(40)),
        (
            "empty-answer",
            lambda r: (
                r["success"] and r["tokens_out"] == 0 and r["model_type"] == "text-generation"
            ),
            c(-1),
            c(0),
        ),
        ("tiny-answer", lambda r: r["success"] and lt(r["tokens_out"], 5), c(None), c(20)),
        ("pricey", lambda r: gt(r["cost"], 0.05), c(None), lambda r: max(0, 100 - r["cost"] * 500)),
        ("cached-ok", lambda r: r["cached"] and r["success"], c(1), c(90)),
        ("fast-ok", lambda r: r["success"] and lt(r["duration"], 300), c(1), c(None)),
        (
            "support-bot",
            lambda r: "support-bot" in (r["metadata"] or "") and r["success"],
            c(None),
            c(70),
        ),
        (
            "search-long",
            lambda r: '"app":"search"' in (r["metadata"] or "") and gt(r["tokens_in"], 3000),
            c(None),
            c(45),
        ),
        (
            "gpt4o",
            lambda r: r["model"] == "gpt-4o" and r["success"],
            c(None),
            lambda r: 85 if r["duration"] < 2000 else 65,
        ),
        (
            "haiku-fast",
            lambda r: r["model"] == "claude-3-5-haiku" and lt(r["duration"], 800),
            c(1),
            c(None),
        ),
        ("workers", lambda r: r["provider"] == "workers-ai" and not r["success"], c(-1), c(None)),
        ("big-prompt", lambda r: gt(r["tokens_in"], 6000), c(None), c(50)),
        ("long-answer", lambda r: gt(r["tokens_out"], 1500), c(None), c(75)),
        ("cheap-ok", lambda r: lt(r["cost"], 0.0001) and r["success"], c(1), c(None)),
        ("step-retry", lambda r: gt(r["step"], 0), c(None), c(55)),
        (
            "mixed",
            lambda r: r["success"] and 1000 <= r["duration"] <= 1200,
            lambda r: 1 if (r["tokens_out"] or 0) > 100 else -1,
            c(None),
        ),
    ]


def synthetic_logs(n: int) -> pl.DataFrame:
    """n logs in one day, pseudo-random but deterministic, built with expressions (fast)."""
    i = pl.int_range(n, dtype=pl.UInt64)

    def rnd(salt: int, mod: int) -> pl.Expr:
        return (i.hash(salt) % mod).cast(pl.Int64)

    status = (
        pl.when(rnd(1, 1000) < 15)
        .then(500)
        .when(rnd(1, 1000) < 25)
        .then(503)
        .when(rnd(1, 1000) < 45)
        .then(429)
        .otherwise(200)
    )
    start = int(WINDOW.start.timestamp() * 1000)
    frame = pl.select(
        pl.format("01BENCH{}", i.cast(pl.String).str.zfill(19)).alias("id"),
        (pl.lit(start) + rnd(2, 86_400_000)).cast(pl.Datetime("ms", "UTC")).alias("created_at"),
        rnd(3, 5).alias("m"),
        status.cast(pl.Int32).alias("status_code"),
        rnd(4, 30_000).alias("duration"),
        rnd(5, 8000).alias("tokens_in"),
        rnd(6, 2000).alias("tokens_out"),
        (rnd(7, 100_000).cast(pl.Float64) / 1_000_000).alias("cost"),
        (rnd(8, 100) < 5).alias("cached"),
        (rnd(9, 100) < 2).cast(pl.Int32).alias("step"),
        pl.concat_str(
            pl.lit('{"user":"u_'),
            rnd(10, 400).cast(pl.String),
            pl.lit('","app":"'),
            pl.lit(pl.Series(APPS)).gather(rnd(11, 5)),
            pl.lit('","request_id":"req_'),
            i.cast(pl.String),
            pl.lit('"}'),
        ).alias("metadata"),
    )
    return frame.select(
        "id",
        "created_at",
        pl.lit(pl.Series(PROVIDERS)).gather(pl.col("m")).alias("provider"),
        pl.lit(pl.Series(MODELS)).gather(pl.col("m")).alias("model"),
        pl.lit("text-generation").alias("model_type"),
        pl.lit("chat/completions").alias("path"),
        pl.lit("chat").alias("request_type"),
        "status_code",
        "step",
        "duration",
        (pl.col("status_code") == 200).alias("success"),
        "cached",
        "tokens_in",
        "tokens_out",
        "cost",
        pl.lit(False).alias("custom_cost"),
        "metadata",
        pl.lit("application/json").alias("request_content_type"),
        pl.lit("application/json").alias("response_content_type"),
        pl.lit(None, pl.Int8).alias("feedback"),
        pl.lit(None, pl.Float64).alias("score"),
        pl.lit(None, pl.String).alias("extra"),
        pl.lit(WINDOW.end).dt.cast_time_unit("ms").alias("extracted_at"),
    )


WORDS = ["up", "down", "👍", "👎", "good", "bad", "1", "-1", "positive", "negative", "meh"]


def synthetic_csv(ids: list[str], rows: int) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["log_id", "feedback", "score", "reason"])
    for k in range(rows):
        log_id = ids[(k * 7919) % len(ids)] if k % 50 else ""
        score = "" if k % 3 else f"{(k * 37) % 110}%"
        writer.writerow([log_id, WORDS[k % len(WORDS)] if k % 4 else "", score, f"row {k}"])
    return buffer.getvalue()


def write_job(tmp: Path) -> Path:
    lines = [
        '[gateway]\naccount_id = "0123456789abcdef0123456789abcdef"\ngateway_id = "bench"',
        f'[store]\ndata_dir = "{tmp / "data"}"',
        f'[labels.csv]\ninbox = "{tmp / "inbox"}"',
    ]
    for name, when, fb, sc in RULES:
        rule = [f'[[labels.rules]]\nname = "{name}"\nwhen = """{when}"""']
        for key, value in (("feedback", fb), ("score", sc)):
            if value is not None:
                rule.append(
                    f'{key} = """{value}"""' if isinstance(value, str) else f"{key} = {value}"
                )
        lines.append("\n".join(rule))
    path = tmp / "bench.toml"
    path.write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# The row-by-row baseline

FEEDBACK = {
    "1": 1, "+1": 1, "up": 1, "thumbs_up": 1, "good": 1, "positive": 1, "👍": 1,
    "-1": -1, "down": -1, "thumbs_down": -1, "bad": -1, "negative": -1, "👎": -1,
}  # fmt: skip


def loop_label(rows: list[dict[str, Any]], csv_text: str) -> dict[str, Any]:
    """What a straightforward Python script does for the same job."""
    t = time.perf_counter()
    labels: dict[str, dict[str, tuple[Any, Any]]] = {}
    for name, when, feedback, score in py_rules():
        source = f"rule:{name}"
        for r in rows:
            if when(r):
                fb, sc = feedback(r), score(r)
                fb = fb if fb in (1, -1) else None
                sc = sc if sc is not None and 0 <= sc <= 100 else None
                if fb is not None or sc is not None:
                    labels.setdefault(r["id"], {})[source] = (fb, sc)
    rules_s = time.perf_counter() - t
    accepted = rejected = 0
    analysts: dict[str, tuple[Any, Any]] = {}
    for row in csv.DictReader(io.StringIO(csv_text)):
        log_id = (row.get("log_id") or "").strip()
        fb_text = (row.get("feedback") or "").strip().lower()
        sc_text = (row.get("score") or "").strip().rstrip("%")
        fb = FEEDBACK.get(fb_text) if fb_text else None
        try:
            sc = float(sc_text) if sc_text else None
        except ValueError:
            sc = -1.0
        if not log_id or (fb_text and fb is None) or (sc is not None and not 0 <= sc <= 100):
            rejected += 1
            continue
        if fb is None and sc is None:
            rejected += 1
            continue
        accepted += 1
        analysts[log_id] = (fb, sc)
    for log_id, value in analysts.items():
        labels.setdefault(log_id, {})["csv:x.csv"] = value
    order = [f"rule:{name}" for name, *_ in RULES]
    chosen, conflicts = {}, 0
    for log_id, by_source in labels.items():
        source = (
            "csv:x.csv" if "csv:x.csv" in by_source else next(s for s in order if s in by_source)
        )
        chosen[log_id] = by_source[source]
        fbs = {v[0] for v in by_source.values() if v[0] is not None}
        conflicts += len(fbs) > 1
    return {
        "chosen": len(chosen),
        "conflicts": conflicts,
        "accepted": accepted,
        "rejected": rejected,
        "rules_seconds": rules_s,
    }


def run_stage(job_file: str, run_id: str) -> None:
    """Child process: run the label stage once, print seconds, peak RSS and the result."""
    job = load_job(Path(job_file), env={})
    run = store.open_run(job.store.data_dir, run_id)
    t = time.perf_counter()
    result = asyncio.run(label(job, run))
    seconds = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rss_mb": rss_mb, "result": result.to_json()}))


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--stage":
        run_stage(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=int, default=1_000_000)
    parser.add_argument("--csv-rows", type=int, default=100_000)
    parser.add_argument("--loop-fraction", type=float, default=0.1)
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-label-"))
    try:
        t = time.perf_counter()
        logs = synthetic_logs(args.logs).cast(pl.Schema(LOG_SCHEMA))
        part = store.partition_dir(tmp / "data", "bench", DAY) / "part-0.parquet"
        store.write_parquet_atomic(logs.to_arrow().cast(LOG_SCHEMA), part)
        ids = logs["id"].to_list()
        csv_text = synthetic_csv(ids, args.csv_rows)
        job = load_job(write_job(tmp), env={})
        print(
            f"setup: {args.logs:,} logs, {len(RULES)} rules, {args.csv_rows:,}-row CSV "
            f"({time.perf_counter() - t:.1f} s, not timed)"
        )

        (tmp / "inbox").mkdir()
        (tmp / "inbox" / "x.csv").write_text(csv_text, encoding="utf-8")
        run = store.create_run(tmp / "data", job.name, "bench", WINDOW)
        # The stage runs in a fresh process so that its peak RSS is its own, not the setup's.
        child = subprocess.run(
            [sys.executable, __file__, "--stage", str(tmp / "bench.toml"), run.run_id],
            check=True,
            capture_output=True,
            text=True,
        )
        stage = json.loads(child.stdout)
        vec_s, rss_mb, result = stage["seconds"], stage["rss_mb"], stage["result"]
        vec_rate = (args.logs + args.csv_rows) / vec_s

        k = max(1, int(args.logs * args.loop_fraction))
        rows = logs.head(k).to_dicts()  # not timed
        sub_csv = synthetic_csv(ids[:k], max(1, int(args.csv_rows * args.loop_fraction)))
        t = time.perf_counter()
        loop = loop_label(rows, sub_csv)
        loop_sub_s = time.perf_counter() - t
        loop_s = loop_sub_s / args.loop_fraction
        loop_rate = (args.logs + args.csv_rows) / loop_s

        print(
            f"vectorised label stage: {vec_s:.2f} s  ({vec_rate:,.0f} rows/s)  "
            f"peak RSS {rss_mb:,.0f} MB (its own process)  -> {result['total']:,} labeled logs, "
            f"{sum(result['by_source'].values()):,} label rows, {result['conflicts']:,} "
            f"conflicts, csv {result['csv']['accepted']:,} accepted / "
            f"{result['csv']['rejected']:,} rejected"
        )
        print(
            f"row-by-row Python loop: {loop_sub_s:.2f} s on {args.loop_fraction:.0%} of the data "
            f"({k:,} logs) -> {loop_s:.1f} s scaled to the full size ({loop_rate:,.0f} rows/s); "
            f"subset result: {loop['chosen']:,} labeled, {loop['conflicts']:,} conflicts"
        )
        rules_loop_s = loop["rules_seconds"] / args.loop_fraction
        frame = pl.read_parquet(part)
        timings = []
        for _ in range(3):
            t = time.perf_counter()
            RulesLabeler(job.labels.rules).run(frame, LabelContext("bench", WINDOW.end))
            timings.append(time.perf_counter() - t)
        rules_vec_s = min(timings)
        print(
            f"rules alone (20 rules x {args.logs:,} logs): vectorised {rules_vec_s:.2f} s "
            f"(best of 3), "
            f"loop {rules_loop_s:.1f} s scaled -> {rules_loop_s / rules_vec_s:.0f}x"
        )
        print(
            f"ratio: vectorised is {loop_s / vec_s:.0f}x the loop "
            f"(goal >= 50x); {vec_s:.2f} s vs goal <= 5 s"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
