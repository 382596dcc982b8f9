"""Emulator capacity: requests/s for list (per_page 50) and PATCH over real HTTP, no faults.

The emulator runs in its own process (uvicorn, one process, as ``aigw-feedback emulator serve``
does), seeded with the 20,000-log sample; a concurrent ``httpx.AsyncClient`` drives it from this
process over loopback. The baseline is a trivial Starlette route on the same uvicorn settings,
measured side by side in the same run, so the ratio says how much the emulator itself costs. The
goal is 500 requests/s on a 2-core machine. Bounded: each scenario stops after --requests requests
or --seconds seconds, whichever comes first.

    .venv/bin/python bench/bench_emulator.py [--concurrency 16] [--requests 4000] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

GOAL = 500.0
REPO = Path(__file__).resolve().parents[1]

EMULATOR = """
import sys
from pipeline.emulator.server import ServeOptions, serve
from pipeline.emulator.settings import EmulatorSettings
# No faults; a quota the benchmark cannot reach, so every request takes the full rate-limit path.
settings = EmulatorSettings(rate_limit_requests=10**9)
def echo(line):
    if "base URL" in line:
        print("READY", line.split()[-1], flush=True)
serve(ServeOptions(port=0, settings=settings), echo=echo)
"""

BASELINE = """
import socket
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from pipeline.emulator.server import uvicorn_config

async def ping(request):
    return Response(b'{"success":true,"result":{}}', media_type="application/json")

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.bind(("127.0.0.1", 0))
sock.listen(1024)
port = sock.getsockname()[1]
app = Starlette(routes=[Route("/ping", ping)])
print("READY", f"http://127.0.0.1:{port}", flush=True)
uvicorn.Server(uvicorn_config(app, "127.0.0.1", port, quiet=True, access_log=False)).run(
    sockets=[sock]
)
"""


@contextmanager
def server_process(code: str) -> Iterator[tuple[str, psutil.Process]]:
    """Run a server script in a child process; yield its URL and process; stop it with SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            if line.startswith("READY "):
                url = line.split()[1]
                break
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
        else:
            raise RuntimeError(f"server exited with {proc.wait()}")
        yield url, psutil.Process(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@dataclass(frozen=True)
class Result:
    name: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu_s: float

    @property
    def server_ms_per_request(self) -> float:
        return self.server_cpu_s * 1000 / self.requests if self.requests else 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


RequestMaker = Callable[[httpx.AsyncClient, int], "asyncio.Future[httpx.Response] | object"]


async def drive(
    name: str,
    base_url: str,
    make: Callable[[httpx.AsyncClient, int], object],
    server: psutil.Process,
    *,
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    headers: dict[str, str] | None = None,
) -> Result:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    errors = 0
    counter = iter(range(max_requests))
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=30
    ) as client:
        # Warm up connections and caches, unmeasured.
        await asyncio.gather(*(make(client, i) for i in range(concurrency)))  # type: ignore[misc]
        cpu_before = sum(server.cpu_times()[:2])
        start = time.perf_counter()
        deadline = start + max_seconds

        async def worker() -> None:
            nonlocal errors
            for i in counter:
                if time.perf_counter() > deadline:
                    return
                t0 = time.perf_counter()
                response = await make(client, i)  # type: ignore[misc]
                latencies.append(time.perf_counter() - t0)
                if response.status_code != 200:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        server_cpu = sum(server.cpu_times()[:2]) - cpu_before
    latencies.sort()
    n = len(latencies)
    return Result(
        name,
        n,
        errors,
        elapsed,
        latencies[n // 2] * 1000 if n else 0.0,
        latencies[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0,
        server_cpu,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description="Emulator capacity benchmark")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    bounds = {
        "concurrency": args.concurrency,
        "max_requests": args.requests,
        "max_seconds": args.seconds,
    }
    from pipeline.emulator.settings import (
        DEFAULT_ACCOUNT_ID,
        DEFAULT_EDIT_TOKEN,
        DEFAULT_GATEWAY_ID,
    )

    results: list[Result] = []
    with server_process(BASELINE) as (url, proc):
        results.append(asyncio.run(drive("baseline GET /ping", url, _ping, proc, **bounds)))
    with server_process(EMULATOR) as (base_url, proc):
        logs = f"/accounts/{DEFAULT_ACCOUNT_ID}/ai-gateway/gateways/{DEFAULT_GATEWAY_ID}/logs"
        auth = {"Authorization": f"Bearer {DEFAULT_EDIT_TOKEN}"}
        ids, newest_day = asyncio.run(_all_ids(base_url, logs, auth))
        rng = random.Random(1)

        pages = max(1, len(ids) // 50)

        def list_page(client: httpx.AsyncClient, i: int) -> object:
            # Every page of the sample in turn: offsets up to 20,000, the costly case.
            return client.get(logs, params={"per_page": 50, "page": 1 + (i * 7) % pages})

        day_filter = json.dumps(
            [
                {"key": "created_at", "operator": "gt", "value": [newest_day]},
                {"key": "created_at", "operator": "lt", "value": [newest_day + "T06:00:00Z"]},
            ]
        )

        def list_window(client: httpx.AsyncClient, i: int) -> object:
            # What the extractor does: JSON filters on a created_at window, paged.
            params = {"per_page": 50, "page": 1 + i % 4, "filters": day_filter}
            return client.get(logs, params=params)

        def patch(client: httpx.AsyncClient, i: int) -> object:
            log_id = ids[rng.randrange(len(ids))]
            return client.patch(f"{logs}/{log_id}", json={"feedback": rng.choice((-1, 1))})

        for name, make in (
            ("list per_page=50, all pages", list_page),
            ("list per_page=50, filtered", list_window),
            ("PATCH feedback", patch),
        ):
            results.append(asyncio.run(drive(name, base_url, make, proc, headers=auth, **bounds)))
    report(results, args.concurrency)
    return 0 if all(r.errors == 0 for r in results) else 1


def report(results: list[Result], concurrency: int) -> None:
    baseline = results[0]
    print(
        f"cpus={os.cpu_count()} concurrency={concurrency} goal={GOAL:.0f} req/s; "
        "server: one uvicorn process; client: httpx.AsyncClient in this process"
    )
    header = (
        f"{'scenario':<30}{'requests':>9}{'errors':>7}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'x base':>8}{'x goal':>8}{'srv ms/req':>11}{'srv cap/s':>10}"
    )
    print(header)
    for r in results:
        capacity = 1000 / r.server_ms_per_request if r.server_ms_per_request else 0.0
        print(
            f"{r.name:<30}{r.requests:>9}{r.errors:>7}{r.rate:>8.0f}{r.p50_ms:>8.1f}"
            f"{r.p99_ms:>8.1f}{r.rate / baseline.rate:>8.2f}{r.rate / GOAL:>8.2f}"
            f"{r.server_ms_per_request:>11.2f}{capacity:>10.0f}"
        )
    print(
        "req/s is end to end and bounded by the client on 2 cores (see the baseline row); "
        "'srv cap/s' is 1000 / server CPU ms per request: what one server core could answer."
    )


def _ping(client: httpx.AsyncClient, i: int) -> object:
    return client.get("/ping")


async def _all_ids(base_url: str, logs: str, auth: dict[str, str]) -> tuple[list[str], str]:
    """Ids of the newest 2,000 logs (PATCH targets) and the newest log's UTC day."""
    async with httpx.AsyncClient(base_url=base_url, headers=auth) as client:
        response = await client.get(logs, params={"per_page": 50})
        response.raise_for_status()
        total = response.json()["result_info"]["total_count"]
        pages = await asyncio.gather(
            *(
                client.get(logs, params={"per_page": 50, "page": p})
                for p in range(1, min(total // 50, 40) + 1)
            )
        )
    entries = [entry for page in pages for entry in page.json()["result"]]
    return [e["id"] for e in entries], entries[0]["created_at"][:10]


if __name__ == "__main__":
    sys.exit(main())
