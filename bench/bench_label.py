"""Label stage at scale: N logs × 20 rules plus an analysts' CSV, streamed against the stage it replaced.

    .venv/bin/python bench/bench_label.py [--logs 1000000] [--csv-rows 100000] [--baseline 096ff04]
    .venv/bin/python bench/bench_label.py --logs 10000000 --csv-rows 1000000
    .venv/bin/python bench/bench_label.py --repeat 3      # medians of 3 runs a side, alternated

What is measured, each in a fresh process so that its peak RSS (VmHWM, the interpreter and
polars included; not ru_maxrss, which on Linux keeps the forking parent's peak: this bench's
parent holds ~700 MB after writing 1M logs) is its own, with its CPU time (user + system): the whole `pipeline.label.label` stage as a nightly run calls it
(read the window's Parquet partitions, CSV inbox: read, validate, move, manifest, rejects file;
20 SQL rules; choose by precedence; analysis; write labels/chosen/analysis), once with this
tree's code and once with the in-memory stage of commit `--baseline` (its `pipeline/` package
taken out with `git archive` into a temporary folder and put first on PYTHONPATH; no worktree).
Both read the same files and must give the same outputs: the bench compares their
label_analysis.json (without run id and timings) and the chosen rows, and says so.
The logs are written as the extract writes a day (one file of `ROW_GROUP_ROWS`-row row groups),\ndirectly and vectorised; not timed.
Goals (issue 11): 1M logs ≤ 500 MB; 10M logs × 20 rules + a 1M-row CSV ≤ 2 GB and ≤ 60 s.
`--loop-fraction F` also times a row-by-row Python script on a fraction F of the data.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
from measure import baseline_package, peak_rss_mb

from pipeline.config import load_job
from pipeline.extract.staging import ROW_GROUP_ROWS
from pipeline.label import label
from pipeline.labelers.base import LabelContext
from pipeline.labelers.rules import RulesLabeler
from pipeline.schemas import LOG_SCHEMA
from pipeline.state import store
from pipeline.window import Window

BASELINE = "096ff04"  # the last commit of the in-memory label stage
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


def log_id(i: pl.Expr) -> pl.Expr:
    """The id of synthetic log number `i` (a 26-character string, like a ULID)."""
    return pl.format("01BENCH{}", i.cast(pl.String).str.zfill(19))


def synthetic_logs(n: int, first: int = 0) -> pl.DataFrame:
    """Logs number first..first+n-1 of one day, pseudo-random but deterministic, built with
    expressions (fast), in LOG_SCHEMA (columns the generator does not set are null)."""
    i = pl.int_range(first, first + n, dtype=pl.UInt64)

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
        log_id(i).alias("id"),
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
    frame = frame.select(
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
    schema = pl.Schema(LOG_SCHEMA)
    return frame.select(
        pl.col(c) if c in frame.columns else pl.lit(None).alias(c) for c in schema.names()
    ).cast(schema)


WORDS = ["up", "down", "👍", "👎", "good", "bad", "1", "-1", "positive", "negative", "meh"]


def synthetic_csv(logs: int, rows: int) -> str:
    """An analysts' CSV of `rows` rows over logs 0..logs-1: every 50th row has no log id, every
    4th no feedback, two in three no score; some words and scores are invalid."""
    k = pl.int_range(rows, dtype=pl.Int64)
    frame = pl.select(
        pl.when(k % 50 != 0).then(log_id((k * 7919) % logs)).otherwise(pl.lit("")).alias("log_id"),
        pl.when(k % 4 != 0)
        .then(pl.lit(pl.Series(WORDS)).gather(k % len(WORDS)))
        .otherwise(pl.lit(""))
        .alias("feedback"),
        pl.when(k % 3 == 0)
        .then(pl.format("{}%", (k * 37) % 110))
        .otherwise(pl.lit(""))
        .alias("score"),
        pl.format("row {}", k).alias("reason"),
    )
    return frame.write_csv()


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
    t, cpu = time.perf_counter(), _cpu()
    result = asyncio.run(label(job, run))
    seconds, cpu = time.perf_counter() - t, _cpu() - cpu
    out = {"seconds": seconds, "cpu": cpu, "rss_mb": peak_rss_mb(), "result": result.to_json()}
    print(json.dumps(out))


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def write_logs(folder: Path, logs: int, chunk: int = 1_000_000) -> None:
    """The day's partition as the extract leaves it: one Parquet file of ROW_GROUP_ROWS-row
    row groups, written `chunk` generated logs at a time."""
    path = store.partition_dir(folder, "bench", DAY) / "part-0.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, LOG_SCHEMA, compression="zstd") as writer:
        for first in range(0, logs, chunk):
            frame = synthetic_logs(min(chunk, logs - first), first)
            writer.write_table(frame.to_arrow().cast(LOG_SCHEMA), row_group_size=ROW_GROUP_ROWS)


def stage_once(tmp: Path, csv_text: str, pythonpath: Path | None) -> tuple[dict[str, Any], Path]:
    """A fresh inbox and run, the stage in its own process (with the baseline package first on
    PYTHONPATH if given); returns its report line and the run folder."""
    inbox = tmp / "inbox"
    shutil.rmtree(inbox, ignore_errors=True)
    inbox.mkdir()
    (inbox / "x.csv").write_text(csv_text, encoding="utf-8")
    run = store.create_run(tmp / "data", "bench", "bench", WINDOW)
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    child = subprocess.run(
        [sys.executable, __file__, "--stage", str(tmp / "bench.toml"), run.run_id],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
    )
    return json.loads(child.stdout.strip().splitlines()[-1]), run.paths.root


def same_outputs(a: Path, b: Path) -> bool:
    """The two runs' analyses (without run id and timings) and chosen rows are equal."""

    def analysis(root: Path) -> dict[str, Any]:
        data = json.loads((root / "label_analysis.json").read_text(encoding="utf-8"))
        data = {k: v for k, v in data.items() if k not in ("run_id", "csv")}
        loaded: dict[str, Any] = json.loads(json.dumps(data).replace(root.name, "RUN"))
        return loaded

    if analysis(a) != analysis(b):
        return False
    # labeled_at is each run's clock: the rest of every chosen row must be equal.
    chosen = [
        pl.read_parquet(root / "chosen.parquet").drop("labeled_at").sort("log_id")
        for root in (a, b)
    ]
    labels = [
        pl.scan_parquet(root / "labels.parquet").select(pl.len(), pl.col("log_id").n_unique())
        for root in (a, b)
    ]
    return chosen[0].equals(chosen[1]) and pl.collect_all(labels)[0].equals(
        pl.collect_all(labels)[1]
    )


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--stage":
        run_stage(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=int, default=1_000_000)
    parser.add_argument("--csv-rows", type=int, default=100_000)
    parser.add_argument("--baseline", default=BASELINE, help="commit of the in-memory stage")
    parser.add_argument("--no-baseline", action="store_true", help="time this tree only")
    parser.add_argument("--loop-fraction", type=float, default=0.0)
    parser.add_argument("--repeat", type=int, default=1, help="runs per side; medians printed")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-label-"))
    try:
        t = time.perf_counter()
        write_logs(tmp / "data", args.logs)
        csv_text = synthetic_csv(args.logs, args.csv_rows)
        job = load_job(write_job(tmp), env={})
        print(
            f"setup: {args.logs:,} logs (one Parquet file, {ROW_GROUP_ROWS:,}-row row groups), "
            f"{len(RULES)} rules, {args.csv_rows:,}-row CSV ({time.perf_counter() - t:.1f} s, "
            "not timed)"
        )
        package = None if args.no_baseline else baseline_package(args.baseline, tmp / "base")
        runs: dict[str, list[dict[str, Any]]] = {"new": [], "old": []}
        roots: dict[str, Path] = {}
        for _ in range(max(args.repeat, 1)):  # the two sides alternate: the box's load is shared
            for side, path in (("new", None), ("old", package)):
                if side == "old" and package is None:
                    continue
                out, roots[side] = stage_once(tmp, csv_text, path)
                runs[side].append(out)
        new = _median(runs["new"])
        result = runs["new"][-1]["result"]
        print(
            f"streamed stage:  {new['seconds']:6.2f} s  (CPU {new['cpu']:5.1f} s)  peak RSS "
            f"{new['rss_mb']:7,.0f} MB  -> "
            f"{result['total']:,} labeled logs, {sum(result['by_source'].values()):,} label rows, "
            f"{result['conflicts']:,} conflicts, csv {result['csv']['accepted']:,} accepted / "
            f"{result['csv']['rejected']:,} rejected"
        )
        if runs["old"]:
            old = _median(runs["old"])
            print(
                f"in-memory stage: {old['seconds']:6.2f} s  (CPU {old['cpu']:5.1f} s)  peak RSS "
                f"{old['rss_mb']:7,.0f} MB  (commit {args.baseline})"
            )
            print(
                f"ratio streamed/in-memory: time {new['seconds'] / old['seconds']:.2f}x, "
                f"CPU {new['cpu'] / old['cpu']:.2f}x, peak RSS {new['rss_mb'] / old['rss_mb']:.2f}x; "
                f"same outputs: {same_outputs(roots['new'], roots['old'])}"
            )
        if args.repeat > 1:
            for side, label_ in (("new", "streamed"), ("old", "in-memory")):
                every = ", ".join(f"{r['seconds']:.2f} s {r['rss_mb']:,.0f} MB" for r in runs[side])
                if every:
                    print(f"  {label_} runs: {every}")
        goal_mb, goal_s = (500, None) if args.logs <= 1_000_000 else (2048, 60.0)
        print(
            f"goal: peak RSS <= {goal_mb:,} MB"
            + (f" and <= {goal_s:.0f} s" if goal_s else "")
            + f": {'met' if new['rss_mb'] <= goal_mb and (goal_s is None or new['seconds'] <= goal_s) else 'NOT met'}"
        )
        if args.loop_fraction > 0:
            loop_compare(tmp, job, args, new["seconds"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _median(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Per figure (seconds, CPU, peak RSS), the median of the runs."""
    return {k: statistics.median(r[k] for r in runs) for k in ("seconds", "cpu", "rss_mb")}


def loop_compare(tmp: Path, job: Any, args: argparse.Namespace, stage_s: float) -> None:
    """The row-by-row Python script on a fraction of the data, scaled linearly (it says so)."""
    k = max(1, int(args.logs * args.loop_fraction))
    rows = synthetic_logs(k).to_dicts()  # not timed
    sub_csv = synthetic_csv(k, max(1, int(args.csv_rows * args.loop_fraction)))
    t = time.perf_counter()
    loop = loop_label(rows, sub_csv)
    loop_sub_s = time.perf_counter() - t
    loop_s = loop_sub_s / args.loop_fraction
    print(
        f"row-by-row Python loop: {loop_sub_s:.2f} s on {args.loop_fraction:.0%} of the data "
        f"({k:,} logs) -> {loop_s:.1f} s scaled to the full size; the stage is "
        f"{loop_s / stage_s:.0f}x faster; subset: {loop['chosen']:,} labeled"
    )
    frame = synthetic_logs(args.logs)
    t = time.perf_counter()
    RulesLabeler(job.labels.rules).run(frame, LabelContext("bench", WINDOW.end))
    rules_s = time.perf_counter() - t
    print(
        f"rules alone (20 rules x {args.logs:,} logs in memory): {rules_s:.2f} s, loop "
        f"{loop['rules_seconds'] / args.loop_fraction:.1f} s scaled"
    )


if __name__ == "__main__":
    main()
