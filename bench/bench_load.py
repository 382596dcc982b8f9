"""Load benchmark: the whole pipeline against Cloudflare's SDK loop, and PATCH throughput vs budget.

Both parts use the same emulator settings (benchkit): the rate limit scaled down to 60 requests
per 3 s (20/s instead of Cloudflare's 4/s), a 10 s block, 30 ms latency, served over real HTTP on
loopback by an emulator in its own process (each side its own emulator, the same generated logs).

1. Side by side, one day of logs labeled by two rules (failed requests -1, fast answers +1):
   - the pipeline: ``run_job`` = extract -> label -> plan -> load -> verify -> report;
   - the baseline, written the way Cloudflare's guide suggests with the official ``cloudflare``
     SDK: list the window's logs (auto-paging), apply the same rules in Python, then for each label
     ``client.ai_gateway.logs.edit(...)`` followed by ``.get(...)`` to check it, sequentially.
   Printed: wall time, requests per label, 429s, labels lost, and the ratios.
2. Throughput: ``--changes`` planned PATCHes loaded by ``pipeline.load``: PATCH/s against the
   budget (60/3 s x headroom 0.9 = 18/s) and against the server's limit (20/s). Goal >= 0.9.

    .venv/bin/python bench/bench_load.py [--logs 1200] [--changes 2000] [--skip-baseline]

Bounded: part 1 takes about a minute with the defaults, part 2 about --changes / 18 seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import (
    DAY,
    LATENCY_MS,
    LIMIT,
    WINDOW_S,
    Emulator,
    day_logs,
    emulator,
    job_for,
    scaled_settings,
    sdk_loop,
)

from pipeline.config import JobConfig
from pipeline.gateway import open_client
from pipeline.load import load
from pipeline.plan import plan
from pipeline.run import run_job
from pipeline.state import store

FAST_MS = 1000

RULES = f"""
[labels.csv]
enabled = false
[[labels.rules]]
name = "failed-request"
when = "NOT success"
feedback = -1
reason = "the request failed"
[[labels.rules]]
name = "fast-answer"
when = "success AND duration < {FAST_MS}"
feedback = 1
reason = "fast answer"
"""


def make_job(tmp: Path, emu: Emulator, extra: str = "") -> JobConfig:
    budget = f'requests_per_period = {LIMIT}\nperiod = "{WINDOW_S:g}s"\nconcurrency = 4'
    return job_for(tmp, emu, budget, f'[verify]\nrecheck_wait = "1s"\n{extra}')


@dataclass
class Side:
    name: str
    seconds: float
    labels: int
    written: int
    requests: int
    rate_limited: int
    lost: int

    @property
    def per_label(self) -> float:
        return self.requests / self.labels if self.labels else 0.0


# ---------------------------------------------------------------------------------------------
# Part 1


def pipeline_side(logs: list[dict[str, Any]]) -> Side:
    with tempfile.TemporaryDirectory() as tmp, emulator(logs, **scaled_settings()) as emu:
        job = make_job(Path(tmp), emu, RULES)
        before = emu.stats()
        t0 = time.perf_counter()
        result = asyncio.run(run_job(job, window=DAY))
        seconds = time.perf_counter() - t0
        s = emu.stats()
        plan_, load_, verify_ = result.stages.plan, result.stages.load, result.stages.verify
        assert plan_ is not None and load_ is not None
        print(f"  pipeline: status {result.status}; " + "; ".join(result.stages.lines()))
        return Side(
            "pipeline",
            seconds,
            plan_.labels,
            load_.patched,
            int(s["total_requests"]) - int(before["total_requests"]),
            int(s["rate_limited"]) - int(before["rate_limited"]),
            lost=plan_.patch - (verify_.verified if verify_ else 0),
        )


def rule_feedback(log: Any) -> int | None:
    """The two rules of RULES, in Python, as the baseline applies them."""
    if not log.success:
        return -1
    if log.duration is not None and log.duration < FAST_MS:
        return 1
    return None


def baseline_side(logs: list[dict[str, Any]]) -> Side:
    """The loop a user would write from Cloudflare's docs with the official SDK (benchkit)."""
    with emulator(logs, **scaled_settings()) as emu:
        done = sdk_loop(emu, DAY, rule_feedback)
    print(f"  baseline: listed {done.listed} logs, {done.labels} labels, {done.written} written")
    return Side(
        "SDK loop",
        done.seconds,
        done.labels,
        done.written,
        done.requests,
        done.rate_limited,
        done.lost,
    )


# ---------------------------------------------------------------------------------------------
# Part 2


def throughput(changes: int) -> None:
    logs = day_logs(changes, seed=7)
    with tempfile.TemporaryDirectory() as tmp, emulator(logs, **scaled_settings()) as emu:
        job = make_job(Path(tmp), emu)
        run = store.create_run(job.store.data_dir, job.name, emu.gateway_id, DAY)
        pl.DataFrame(
            {
                "log_id": [log["id"] for log in logs],
                "feedback": [1] * len(logs),
                "score": [None] * len(logs),
                "source": ["csv:bench.csv"] * len(logs),
                "reason": ["bench"] * len(logs),
            },
            schema={
                "log_id": pl.String,
                "feedback": pl.Int8,
                "score": pl.Float64,
                "source": pl.String,
                "reason": pl.String,
            },
        ).write_parquet(run.paths.chosen)

        async def go() -> Any:
            async with open_client(job) as client:
                await plan(job, run, client=client)  # lookups: one list request per 50 ids
                # Start the load on a full window, as a load after its extract would: the plan's
                # lookups must not count against the load's rate.
                await asyncio.sleep(WINDOW_S)
                t0 = time.perf_counter()
                result = await load(job, run, client=client)
                return result, time.perf_counter() - t0

        before = emu.stats()
        result, seconds = asyncio.run(go())
        after = emu.stats()
    rate = result.patched / seconds
    budget = job.budget.rate_per_second
    limit = LIMIT / WINDOW_S
    print(
        f"  {result.patched} PATCHes in {seconds:.1f} s = {rate:.2f}/s; "
        f"429s: {after['rate_limited'] - before['rate_limited']} (client saw {result.rate_limited})"
    )
    print(
        f"  vs the budget ({budget:.1f}/s = limit x headroom {job.budget.headroom}): {rate / budget:.3f}"
    )
    print(
        f"  vs the server's limit ({limit:.1f}/s): {rate / limit:.3f}   (goal >= 0.9 of the budget)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logs", type=int, default=1200, help="logs in the day (part 1)")
    parser.add_argument("--changes", type=int, default=2000, help="PATCHes to load (part 2)")
    parser.add_argument("--skip-baseline", action="store_true", help="part 2 only")
    args = parser.parse_args()
    print(
        f"emulator: {LIMIT} requests / {WINDOW_S:g} s per token, {LATENCY_MS:g} ms latency, "
        "real HTTP on loopback"
    )
    if not args.skip_baseline:
        logs = day_logs(args.logs)
        print(f"\n1. one day, {len(logs)} logs, two rules: pipeline vs the SDK loop")
        ours = pipeline_side(logs)
        theirs = baseline_side(logs)
        print(f"\n  {'':<10}{'seconds':>9}{'labels':>8}{'written':>9}{'requests':>10}"
              f"{'req/label':>11}{'429s':>6}{'lost':>6}")  # fmt: skip
        for side in (ours, theirs):
            print(f"  {side.name:<10}{side.seconds:>9.1f}{side.labels:>8}{side.written:>9}"
                  f"{side.requests:>10}{side.per_label:>11.2f}{side.rate_limited:>6}{side.lost:>6}")  # fmt: skip
        print(
            f"\n  wall time: the SDK loop takes {theirs.seconds / ours.seconds:.2f}x the pipeline's; "
            f"requests per label {theirs.per_label / ours.per_label:.2f}x; "
            f"429s {ours.rate_limited} vs {theirs.rate_limited}"
        )
    print(f"\n2. throughput: {args.changes} planned PATCHes through the budget")
    throughput(args.changes)


if __name__ == "__main__":
    main()
