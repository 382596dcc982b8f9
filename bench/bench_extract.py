"""Extract: requests per 1,000 logs, throughput against the budget, peak memory for 1M logs.

Each figure is measured side by side with the baseline a user would otherwise write: the official
`cloudflare` SDK's auto-paginating list (page+1 until an empty page; the window sent correctly as
JSON filters through extra_query; no pacing; its own retries).

1. Requests per 1,000 logs and correctness. An emulator in its own process (loopback HTTP) holds
   --logs logs over one day. Quiet, then with churn (2 logs inserted anywhere and 2 deleted on
   every list request, stopped after --churn-requests requests): ids missed and duplicated
   against the window's logs at the end, and logs lost of those present from start to end.
2. Throughput. The emulator limited to 600 requests per 10 s (Cloudflare's 1200 per 300 s scaled
   up so it runs in seconds), 5 ms latency; the extract with the same budget (headroom 0.9:
   54 requests/s) for about --seconds; then the SDK on the same. Share of the budget used, 429s.
3. Peak RSS for --rss-logs logs (1M), each in a child process, against a synthetic API inside the
   child that computes pages arithmetically (O(1) memory), so only the client's memory counts.
   Baseline: collect every entry in a list, then write one table (what a short script does).

4. A crowded millisecond under churn (issue 11): --crowd logs (300) in one millisecond plus
   --crowded-logs (9,000) over two days, 2 inserts and 1 delete on every list request while the
   extract runs; logs lost that were present throughout, duplicates, list requests / the quiet
   minimum (ceil(logs / 50)), for this extract, the extract before it (git, LEGACY_COMMIT) and
   the SDK, each against a fresh emulator.

    .venv/bin/python bench/bench_extract.py [--logs 20000] [--seconds 12] [--rss-logs 1000000]
        [--only requests|throughput|memory|crowded] [--crowded-logs 9000] [--crowd 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from measure import peak_rss_mb  # noqa: E402

from pipeline.config import JobConfig, load_job  # noqa: E402
from pipeline.emulator.settings import (  # noqa: E402
    DEFAULT_ACCOUNT_ID,
    DEFAULT_GATEWAY_ID,
    DEFAULT_READ_TOKEN,
)
from pipeline.extract import ExtractResult, extract  # noqa: E402
from pipeline.gateway import open_client  # noqa: E402
from pipeline.state.store import log_files  # noqa: E402
from pipeline.window import Window  # noqa: E402

DAY = datetime(2026, 11, 1, tzinfo=UTC)
WINDOW = Window(DAY, DAY + timedelta(days=1))

EMULATOR = """
import json, random, sys
from pipeline.emulator.seed import generate_logs, make_log
from pipeline.emulator.server import running_emulator
from pipeline.emulator.settings import EmulatorSettings
args = json.loads(sys.argv[1])
logs = generate_logs(args["n"], seed=1, start=args["start"], end=args["end"])
rng = random.Random(2)
logs += [make_log(rng, args["crowd_at"]) for _ in range(args.get("crowd", 0))]
with running_emulator(EmulatorSettings(**args["settings"]), logs=logs) as server:
    print(server.base_url, flush=True)
    sys.stdin.read()  # serve until the parent closes our stdin
"""


@contextmanager
def emulator(
    n: int, window: Window = WINDOW, crowd: int = 0, crowd_at: int = 0, **settings: Any
) -> Iterator[str]:
    """An emulator process holding n logs over `window` (and `crowd` more in the millisecond
    `crowd_at`); yields its base URL."""
    args: dict[str, Any] = {
        "n": n,
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
    }
    args |= {"crowd": crowd, "crowd_at": crowd_at}
    args["settings"] = {"rate_limit_requests": 10**9, **settings}
    process = subprocess.Popen(
        [sys.executable, "-c", EMULATOR, json.dumps(args)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)


def admin(base_url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    url = base_url.removesuffix("/client/v4") + "/__emulator" + path
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read())


def list_requests(base_url: str) -> int:
    return sum(admin(base_url, "/stats")["requests"].get("list", {}).values())


def make_job(folder: Path, base_url: str, budget: str) -> JobConfig:
    path = folder / "job.toml"
    path.write_text(
        f'[gateway]\naccount_id = "{DEFAULT_ACCOUNT_ID}"\ngateway_id = "{DEFAULT_GATEWAY_ID}"\n'
        f'base_url = "{base_url}"\n[store]\ndata_dir = "{folder / "data"}"\n'
        f'[budget]\nshared_state = "{folder / "budget.sqlite"}"\n{budget}\n',
        encoding="utf-8",
    )
    return load_job(path, env={"CLOUDFLARE_API_TOKEN": DEFAULT_READ_TOKEN})


def ours(
    job: JobConfig, window: Window = WINDOW, extract_fn: Any = None
) -> tuple[ExtractResult, list[str], dict[str, Any]]:
    async def go() -> tuple[ExtractResult, dict[str, Any]]:
        async with open_client(job) as client:
            result = await (extract_fn or extract)(job, window, client=client)
            return result, client.budget.report(result.seconds)

    result, report = asyncio.run(go())
    import pyarrow.parquet as pq

    ids: list[str] = []
    for path in log_files(job.store.data_dir, job.gateway.gateway_id):
        ids.extend(pq.read_table(path, columns=["id"]).column("id").to_pylist())
    return result, ids, report


def sdk(base_url: str, window: Window = WINDOW) -> list[str]:
    """The baseline: the SDK's auto-pagination over the window, page+1 until an empty page."""
    import cloudflare

    filters = [
        {"key": "created_at", "operator": "gt", "value": [_iso(window.start - timedelta(1e-3))]},
        {"key": "created_at", "operator": "lt", "value": [_iso(window.end)]},
    ]
    with cloudflare.Cloudflare(api_token=DEFAULT_READ_TOKEN, base_url=base_url) as client:
        pages = client.ai_gateway.logs.list(
            DEFAULT_GATEWAY_ID,
            account_id=DEFAULT_ACCOUNT_ID,
            per_page=50,
            order_by="created_at",
            order_by_direction="asc",
            extra_query={"filters": json.dumps(filters)},
        )
        return [log.id for log in pages]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def accuracy(got: list[str], truth: set[str]) -> str:
    missed = len(truth - set(got))
    duplicated = len(got) - len(set(got))
    extra = len(set(got) - truth)
    return f"missed {missed}, duplicated {duplicated}, gone-but-kept {extra}"


# ---------------------------------------------------------------------------------------------


def requests_per_thousand(n: int, churn_requests: int) -> None:
    print(f"\n== 1. requests per 1,000 logs ({n:,} logs in one day; minimum possible: 20.0)")
    for churn in (False, True):
        label = "churn 2+2/list" if churn else "quiet"
        rows = []
        for who in ("ours", "sdk"):
            with emulator(n) as url, tempfile.TemporaryDirectory() as tmp:
                if churn:
                    admin(url, "/config", {"churn_insert_per_list": 2, "churn_delete_per_list": 2})
                    stop_after = churn_requests
                else:
                    stop_after = 0
                at_start = set(sdk(url))
                before = list_requests(url)
                started = time.perf_counter()
                if who == "ours":
                    job = make_job(Path(tmp), url, "requests_per_period = 1000000\nperiod = 300")
                    if stop_after:
                        got = _with_churn_stop(url, stop_after, lambda job=job: ours(job)[1])
                    else:
                        got = ours(job)[1]
                else:
                    got = (
                        _with_churn_stop(url, stop_after, lambda url=url: sdk(url))
                        if stop_after
                        else sdk(url)
                    )
                seconds = time.perf_counter() - started
                requests = list_requests(url) - before
                admin(url, "/config", {"churn_insert_per_list": 0, "churn_delete_per_list": 0})
                truth = set(sdk(url))  # quiet now: the window's logs at the end
                lost = len((at_start & truth) - set(got))
                acc = f"{accuracy(got, truth)}; lost of those present throughout {lost}"
                rows.append((who, requests, len(truth), seconds, acc))
        for who, requests, logs, seconds, acc in rows:
            per = requests / logs * 1000
            print(
                f"  {label:15s} {who:5s} {requests:6,} requests for {logs:,} logs = "
                f"{per:5.2f} per 1,000 ({seconds:5.1f} s); {acc}"
            )
        print(f"  {label:15s} ratio ours/sdk requests: {rows[0][1] / rows[1][1]:.3f}")


def _with_churn_stop(url: str, after: int, fn: Any) -> Any:
    """Run fn while a watcher turns churn off once `after` list requests have been served."""
    import threading

    start = list_requests(url)
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if list_requests(url) - start >= after:
                admin(url, "/config", {"churn_insert_per_list": 0, "churn_delete_per_list": 0})
                return
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        return fn()
    finally:
        done.set()
        watcher.join()


def throughput(seconds: float) -> None:
    budget = 600 * 0.9 / 10
    n = int(budget * seconds * 49)
    print(
        f"\n== 2. throughput: limit 600 per 10 s, budget {budget:.0f}/s, 5 ms latency, {n:,} logs"
    )
    limits = {"rate_limit_requests": 600, "rate_limit_window": 10.0, "latency_ms": 5.0}
    rows = []
    with emulator(n, **limits) as url, tempfile.TemporaryDirectory() as tmp:
        job = make_job(Path(tmp), url, "requests_per_period = 600\nperiod = 10")
        started = time.perf_counter()
        result, got, report = ours(job)
        elapsed = time.perf_counter() - started
        stats = admin(url, "/stats")
        rows.append(("ours", result.requests, elapsed, stats["rate_limited"], len(set(got))))
        print(
            f"  ours  {result.requests:,} requests in {elapsed:.1f} s = "
            f"{result.requests / elapsed:.1f}/s = {result.requests / elapsed / budget:.3f} of the "
            f"budget (budget's own count: {report['utilisation']:.3f}); 429s: "
            f"{stats['rate_limited']}; {len(set(got)):,} logs, {result.ranges} ranges walked"
        )
    with emulator(n, **limits) as url:
        started = time.perf_counter()
        got = sdk(url)
        elapsed = time.perf_counter() - started
        stats = admin(url, "/stats")
        requests = sum(stats["requests"]["list"].values())
        rows.append(("sdk", requests, elapsed, stats["rate_limited"], len(set(got))))
        print(
            f"  sdk   {requests:,} requests in {elapsed:.1f} s = {requests / elapsed:.1f}/s = "
            f"{requests / elapsed / budget:.3f} of the budget; 429s: {stats['rate_limited']} "
            f"(each blocks the token for 10 s here, 5 min on Cloudflare); {len(set(got)):,} logs"
        )
    ours_rate = rows[0][4] / rows[0][2]
    sdk_rate = rows[1][4] / rows[1][2]
    print(f"  ratio ours/sdk logs per second: {ours_rate / sdk_rate:.2f}")


# ---------------------------------------------------------------------------------------------
# 4. a crowded millisecond under steady churn

LEGACY_COMMIT = "f825529"  # the extract before the exact walker (issue 11's "today's code")


def legacy_extract() -> Any:
    """The extract of LEGACY_COMMIT, loaded from git as its own package (``legacy_extract``)."""
    import importlib

    folder = Path(tempfile.mkdtemp(prefix="legacy-extract-"))
    package = folder / "legacy_extract"
    package.mkdir()
    for name in ("__init__", "paging", "ranges", "reconcile", "rows", "staging"):
        text = subprocess.run(
            ["git", "show", f"{LEGACY_COMMIT}:pipeline/extract/{name}.py"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (package / f"{name}.py").write_text(
            text.replace("pipeline.extract", "legacy_extract"), encoding="utf-8"
        )
    sys.path.insert(0, str(folder))
    return importlib.import_module("legacy_extract").extract


def crowded(n: int, crowd: int) -> None:
    """Two days of n logs plus `crowd` in one millisecond; 2 inserts and 1 delete on every list
    request (anywhere in the stored range, so behind the client's position too) while each
    extract runs. Truth: the window's ids before (quiet) and after (quiet again)."""
    window = Window(DAY, DAY + timedelta(days=2))
    crowd_at = int((DAY + timedelta(hours=30)).timestamp() * 1000) + 123
    churn = {"churn_insert_per_list": 2, "churn_delete_per_list": 1}
    quiet = {"churn_insert_per_list": 0, "churn_delete_per_list": 0}
    print(
        f"\n== 4. a millisecond holding {crowd} logs + {n:,} logs over two days, "
        "2 inserts and 1 delete on every list request during the extract"
    )
    rows = []
    for who in ("ours", "today", "sdk"):
        with emulator(n, window, crowd, crowd_at) as url, tempfile.TemporaryDirectory() as tmp:
            at_start = set(sdk(url, window))
            minimum = -(-len(at_start) // 50)
            admin(url, "/config", churn)
            before = list_requests(url)
            started = time.perf_counter()
            exit_code = ""
            if who == "sdk":
                got = sdk(url, window)
            else:
                job = make_job(Path(tmp), url, "requests_per_period = 1000000\nperiod = 300")
                fn = extract if who == "ours" else legacy_extract()
                result, got, _ = ours(job, window, fn)
                exit_code = f", exit {result.exit_code}"
            seconds = time.perf_counter() - started
            requests = list_requests(url) - before
            admin(url, "/config", quiet)
            at_end = set(sdk(url, window))
            stayed = at_start & at_end
            lost = len(stayed - set(got))
            dupes = len(got) - len(set(got))
            rows.append((who, lost, dupes, requests, minimum))
            print(
                f"  {who:5s} lost {lost:4d} of {len(stayed):,} present throughout, duplicates "
                f"{dupes}, {requests:,} list requests = {requests / minimum:.2f}x the quiet "
                f"minimum {minimum} ({seconds:.1f} s{exit_code}); held {len(set(got)):,}, "
                f"the window now {len(at_end):,}"
            )
            if who == "ours":
                data = result.to_json()
                print(
                    "        reported: count at start {count_at_start:,}, arrived {arrived}, "
                    "vanished {vanished}, changes ahead {changes_ahead}, pass "
                    "{pass_requests} + extra {extra_requests} (bound {extra_bound}), "
                    "unsettled ranges {n}".format(n=len(data["unsettled_ranges"]), **data)
                )
    ok = rows[0][1] == 0 and rows[0][2] == 0 and rows[0][3] <= 1.5 * rows[0][4]
    print(
        f"  goal (ours: 0 lost, 0 duplicates, <= 1.5x the minimum) -> {'met' if ok else 'NOT met'}"
    )


# ---------------------------------------------------------------------------------------------
# 3. memory: a child process per variant, against a synthetic API of O(1) memory

STEP_MS = 150  # 1M logs at one per 150 ms span about two days


def _fake_api(n: int) -> httpx.MockTransport:
    import random

    from pipeline.emulator.seed import make_log

    start = int(DAY.timestamp() * 1000)
    template = make_log(random.Random(1), start)
    template = {k: v for k, v in template.items() if not k.startswith(("request_", "response_"))}
    template["metadata"] = json.dumps(template.get("metadata") or {"app": "bench"})

    def index_at(ms: float) -> int:  # the first log index with created_at >= ms
        return max(0, min(n, -(-(int(ms) - start) // STEP_MS)))

    def handler(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        lo, hi = 0, n
        excluded: set[int] = set()
        for f in json.loads(params.get("filters", "[]")):
            if f["key"] == "id":  # `id neq`: the logs of the cursor's millisecond already read
                excluded.update(int(v.removeprefix("01JB")) for v in f["value"])
                continue
            at = datetime.fromisoformat(f["value"][0]).timestamp() * 1000
            if f["operator"] == "gt":
                lo = max(lo, index_at(at + 1))
            elif f["operator"] == "lt":
                hi = min(hi, index_at(at))
        while lo in excluded:  # one log per millisecond here: the excluded ones come first
            lo += 1
        page, per_page = int(params.get("page", 1)), int(params.get("per_page", 20))
        first = lo + (page - 1) * per_page
        entries = []
        for i in range(first, min(hi, first + per_page)):
            ms = start + i * STEP_MS
            entry = dict(template)
            entry["id"] = f"01JB{i:022d}"
            entry["created_at"] = _iso(datetime.fromtimestamp(ms / 1000, UTC))
            entries.append(entry)
        info = {"page": page, "per_page": per_page, "count": len(entries)}
        info["total_count"] = max(0, hi - lo)
        return httpx.Response(200, json={"success": True, "result": entries, "result_info": info})

    return httpx.MockTransport(handler)


def child_rss(variant: str, n: int) -> None:
    """Runs in a child process: extract n logs one way, print peak RSS and time as JSON."""
    if variant == "idle":  # the same imports, nothing done: the floor
        print(json.dumps({"logs": 0, "peak_mb": peak_rss_mb(), "seconds": 0.0}))
        return
    window = Window(DAY, DAY + timedelta(milliseconds=n * STEP_MS))
    transport = _fake_api(n)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        job = make_job(Path(tmp), "http://fake.test/client/v4", "requests_per_period = 10000000")
        if variant == "ours":

            async def go() -> int:
                async with open_client(job, transport=transport) as client:
                    result = await extract(job, window, client=client)
                    return result.logs

            logs = asyncio.run(go())
        else:
            logs = asyncio.run(_naive(job, window, transport))
    print(
        json.dumps(
            {"logs": logs, "peak_mb": peak_rss_mb(), "seconds": time.perf_counter() - started}
        )
    )


async def _naive(job: JobConfig, window: Window, transport: httpx.MockTransport) -> int:
    """The baseline script: page+1 until empty, everything in a list, one table at the end."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    filters = [
        {"key": "created_at", "operator": "gt", "value": [_iso(window.start - timedelta(1e-3))]},
        {"key": "created_at", "operator": "lt", "value": [_iso(window.end)]},
    ]
    entries: list[dict[str, Any]] = []
    async with open_client(job, transport=transport) as client:
        page = 1
        while True:
            got = await client.list_logs(filters=filters, page=page, per_page=50)
            if not got.entries:
                break
            entries.extend(got.entries)
            page += 1
    table = pa.Table.from_pylist(entries)
    pq.write_table(table, Path(job.store.data_dir.parent) / "all.parquet")
    return len(entries)


def memory(n: int) -> None:
    print(f"\n== 3. peak RSS extracting {n:,} logs (child processes, synthetic O(1) API)")
    base = _run_child("idle", 0)
    rows = {}
    for variant in ("ours", "naive"):
        rows[variant] = _run_child(variant, n)
        r = rows[variant]
        print(
            f"  {variant:5s} peak {r['peak_mb']:7.0f} MB ({r['peak_mb'] - base['peak_mb']:.0f} MB "
            f"above an idle child) for {r['logs']:,} logs in {r['seconds']:.0f} s"
        )
    print(f"  ratio ours/naive peak RSS: {rows['ours']['peak_mb'] / rows['naive']['peak_mb']:.2f}")
    verdict = "met" if rows["ours"]["peak_mb"] < 500 else "NOT met"
    print(f"  goal for 1M logs: under 500 MB -> {verdict} at {n:,} logs")


def _run_child(variant: str, n: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", variant, str(n)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logs", type=int, default=20_000)
    parser.add_argument("--churn-requests", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--rss-logs", type=int, default=1_000_000)
    parser.add_argument("--crowded-logs", type=int, default=9_000)
    parser.add_argument("--crowd", type=int, default=300)
    parser.add_argument("--only", choices=["requests", "throughput", "memory", "crowded"])
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_rss(args.child[0], int(args.child[1]))
        return
    os.environ.pop("CLOUDFLARE_API_TOKEN", None)
    if args.only in (None, "requests"):
        requests_per_thousand(args.logs, args.churn_requests)
    if args.only in (None, "throughput"):
        throughput(args.seconds)
    if args.only in (None, "memory"):
        memory(args.rss_logs)
    if args.only in (None, "crowded"):
        crowded(args.crowded_logs, args.crowd)


if __name__ == "__main__":
    main()
