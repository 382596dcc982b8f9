"""Whole-run benchmark: `run` (extract -> label -> plan -> load -> verify -> report) against the
physical minimum, and the SDK loop from Cloudflare's guide, side by side.

The ceiling of this job is the rate limit, so its wall time is measured against the physical
minimum: (list requests for the window + one PATCH per change + one verify read per 50 changes)
divided by the rate (headroom x 20/s on the scaled emulator: 60 requests / 3 s, 10 s block, 30 ms
latency, in its own process; see benchkit). The work: --logs logs in one day, --labels of them
labeled by an analyst's CSV (feedback -1/+1, none set before, so every label is a change).

Rows printed: the pipeline at headroom 1.0 and 0.9, and the SDK loop (list the window, then
``logs.edit()`` and ``logs.get()`` per label, sequentially) on the same work; then the pipeline at
--scale x the work, to show how the cost grows (the SDK loop too with --sdk-at-scale). Columns:
wall seconds, the minimum, their ratio, requests per label (and the minimum's), and the 429s the
emulator counted. Process start-up is not in the figures (bench_start.py measures it): a small
untimed run first loads what the stages import. Goals (issue 11): <= 1.05 x the minimum, <= 1.03 requests per label beyond the
list, 0 x 429.

    .venv/bin/python bench/bench_run.py [--logs 1200] [--labels 600] [--scale 5] [--sdk-at-scale]
        [--wide-window 30]  # also h=1.0 at 20/s over a 30 s window: what the 3 s window costs

Bounded: about 5 minutes with the defaults (the SDK loop is ~4 of them).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from pipeline.run import run_job

PER_PAGE = 50  # list and verify batch size


@dataclass(frozen=True)
class Row:
    """One measured side."""

    name: str
    logs: int
    labels: int
    changes: int
    seconds: float
    rate: float  # the rate the minimum is taken at (headroom x limit)
    requests: int
    lists: int  # list requests (extract and verify reads)
    rate_limited: int
    lost: int
    detail: str = ""

    @property
    def minimum_requests(self) -> int:
        return math.ceil(self.logs / PER_PAGE) + self.changes + math.ceil(self.changes / PER_PAGE)

    @property
    def minimum_seconds(self) -> float:
        return self.minimum_requests / self.rate

    @property
    def vs_minimum(self) -> float:
        return self.seconds / self.minimum_seconds

    @property
    def per_label(self) -> float:
        return self.requests / self.labels if self.labels else 0.0

    @property
    def beyond_list_per_label(self) -> float:
        """Requests per label leaving out the window's list requests (the minimum is 1.02)."""
        extract = math.ceil(self.logs / PER_PAGE)
        return max(0, self.requests - extract) / self.labels if self.labels else 0.0


def csv_labels(logs: list[dict[str, Any]], n: int, seed: int = 11) -> dict[str, int]:
    """An analyst's labels: n of the day's logs, feedback -1 or +1."""
    rng = random.Random(seed)
    return {str(log["id"]): rng.choice((-1, 1)) for log in rng.sample(logs, n)}


def write_job(
    tmp: Path, emu: Emulator, headroom: float, labels: dict[str, int], window: float = WINDOW_S
) -> JobConfig:
    inbox = tmp / "inbox"
    inbox.mkdir(parents=True)
    rows = "".join(f"{log_id},{fb},analyst\n" for log_id, fb in labels.items())
    (inbox / "review.csv").write_text("log_id,feedback,reason\n" + rows, encoding="utf-8")
    budget = (
        f'requests_per_period = {limit_for(window)}\nperiod = "{window:g}s"\n'
        f"headroom = {headroom}\nconcurrency = 4"
    )
    return job_for(tmp, emu, budget, f'[labels.csv]\ninbox = "{inbox}"\n')


def lists(stats: dict[str, Any]) -> int:
    return sum(stats["requests"].get("list", {}).values())


def limit_for(window: float) -> int:
    """The quota that keeps the scaled rate (20/s) over a window of `window` seconds."""
    return round(LIMIT / WINDOW_S * window)


def pipeline_row(
    logs: list[dict[str, Any]],
    labels: dict[str, int],
    headroom: float,
    name: str,
    window: float = WINDOW_S,
) -> Row:
    server = scaled_settings(rate_limit_requests=limit_for(window), rate_limit_window=window)
    with tempfile.TemporaryDirectory() as folder, emulator(logs, **server) as emu:
        job = write_job(Path(folder), emu, headroom, labels, window)
        before = emu.stats()
        t0 = time.perf_counter()
        result = asyncio.run(run_job(job, window=DAY))
        seconds = time.perf_counter() - t0
        after = emu.stats()
    st = result.stages
    assert st.plan is not None and st.load is not None and st.verify is not None, result.summary()
    parts = [
        f"{stage} {getattr(st, stage).seconds:.1f}"
        for stage in ("extract", "label", "plan", "load", "verify")
        if getattr(st, stage) is not None
    ]
    stage_sum = sum(getattr(st, s).seconds for s in ("extract", "label", "plan", "load", "verify"))
    detail = (
        f"{result.status}; stages (s): {', '.join(parts)}; outside the stages "
        f"{seconds - stage_sum:.1f} s"
    )
    return Row(
        name,
        len(logs),
        len(labels),
        st.plan.patch,
        seconds,
        headroom * LIMIT / WINDOW_S,
        after["total_requests"] - before["total_requests"],
        lists(after) - lists(before),
        after["rate_limited"] - before["rate_limited"],
        lost=st.plan.patch - st.verify.verified,
        detail=detail,
    )


def sdk_row(logs: list[dict[str, Any]], labels: dict[str, int]) -> Row:
    with emulator(logs, **scaled_settings()) as emu:
        done = sdk_loop(emu, DAY, lambda log: labels.get(log.id))
    return Row(
        "SDK loop",
        len(logs),
        done.labels,
        done.labels,
        done.seconds,
        LIMIT / WINDOW_S,
        done.requests,
        math.ceil(done.listed / PER_PAGE),
        done.rate_limited,
        done.lost,
        detail=f"listed {done.listed}, wrote {done.written}",
    )


HEADER = (
    f"{'':<22}{'logs':>6}{'labels':>7}{'seconds':>9}{'minimum':>9}{'x min':>7}"
    f"{'requests':>10}{'req/label':>10}{'(min)':>7}{'beyond list':>12}{'429s':>6}{'lost':>6}"
)


def show(row: Row) -> str:
    minimum_per_label = row.minimum_requests / row.labels if row.labels else 0.0
    return (
        f"{row.name:<22}{row.logs:>6}{row.labels:>7}{row.seconds:>9.1f}{row.minimum_seconds:>9.1f}"
        f"{row.vs_minimum:>7.3f}{row.requests:>10}{row.per_label:>10.3f}{minimum_per_label:>7.3f}"
        f"{row.beyond_list_per_label:>12.3f}{row.rate_limited:>6}{row.lost:>6}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logs", type=int, default=1200, help="logs in the day")
    parser.add_argument("--labels", type=int, default=600, help="CSV labels among them")
    parser.add_argument("--scale", type=int, default=5, help="the larger work, x (0: skip)")
    parser.add_argument("--sdk-at-scale", action="store_true", help="the SDK loop at scale too")
    parser.add_argument("--skip-sdk", action="store_true", help="no SDK loop at all")
    parser.add_argument(
        "--wide-window",
        type=float,
        default=0.0,
        help="also run h=1.0 with the same 20/s over a window this long (e.g. 30): shows what "
        "the 3 s window itself costs (one request of safety per window, one round trip)",
    )
    args = parser.parse_args()
    print(
        f"emulator (own process): {LIMIT} requests / {WINDOW_S:g} s per token, "
        f"{scaled_settings()['block_seconds']:g} s block, {LATENCY_MS:g} ms latency; "
        "minimum = (list requests + PATCHes + verify reads) / (headroom x 20/s)"
    )
    # The stages load polars, pyarrow and jinja2 when they first run (so that a run's first request
    # leaves early: bench_start.py measures that). One small untimed run first, so that every row
    # is measured with them loaded, the same for each row and for the SDK loop.
    warm = day_logs(60, seed=7)
    pipeline_row(warm, csv_labels(warm, 20), 1.0, "warm-up")
    rows: list[Row] = []
    works = [(args.logs, args.labels, 1)]
    if args.scale > 1:
        works.append((args.logs * args.scale, args.labels * args.scale, args.scale))
    for n_logs, n_labels, times in works:
        logs = day_logs(n_logs)
        labels = csv_labels(logs, n_labels)
        tag = "" if times == 1 else f" {times}x"
        for headroom in (1.0, 0.9):
            row = pipeline_row(logs, labels, headroom, f"run h={headroom:g}{tag}")
            rows.append(row)
            print(f"  {row.name}: {row.seconds:.1f} s ({row.vs_minimum:.3f} x min); {row.detail}")
        if not args.skip_sdk and (times == 1 or args.sdk_at_scale):
            row = sdk_row(logs, labels)
            row = Row(**{**row.__dict__, "name": f"SDK loop{tag}"})
            rows.append(row)
            print(f"  {row.name}: {row.seconds:.1f} s; {row.detail}")
        if args.wide_window and times == 1:
            name = f"run h=1 w={args.wide_window:g}s"
            row = pipeline_row(logs, labels, 1.0, name, args.wide_window)
            rows.append(row)
            print(f"  {row.name}: {row.seconds:.1f} s ({row.vs_minimum:.3f} x min); {row.detail}")
    print()
    print(HEADER)
    for row in rows:
        print(show(row))
    ours = next(r for r in rows if r.name == "run h=1")
    sdk = next((r for r in rows if r.name == "SDK loop"), None)
    if sdk is not None:
        print(
            f"\nSDK loop / run h=1: wall time {sdk.seconds / ours.seconds:.2f}x, requests per label "
            f"{sdk.per_label / ours.per_label:.2f}x, 429s {sdk.rate_limited} vs {ours.rate_limited}"
        )
    big = [r for r in rows if r.name.startswith("run") and r.logs > args.logs]
    for row in big:
        base = next(r for r in rows if r.name == row.name.rsplit(" ", 1)[0])
        print(
            f"{row.name}: {row.logs / base.logs:.0f}x the work takes "
            f"{row.seconds / base.seconds:.2f}x the time ({row.vs_minimum:.3f} x its minimum)"
        )


if __name__ == "__main__":
    main()
