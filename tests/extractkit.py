"""Helpers for the extract and gateway tests: an in-process emulator, a job aimed at it, fake time.

The emulator is mounted with ``httpx.ASGITransport`` (fast, no sockets); ``Hooked`` lets a test
change the emulator's data or settings just before the n-th list request, which is how logs are
inserted and deleted "while the client pages".
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq

from pipeline.config import JobConfig, load_job
from pipeline.emulator.app import create_app
from pipeline.emulator.control import EmulatorControl
from pipeline.emulator.seed import make_log
from pipeline.emulator.settings import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_GATEWAY_ID,
    DEFAULT_READ_TOKEN,
    EmulatorSettings,
)
from pipeline.emulator.store import EmulatorStore
from pipeline.state.store import log_files
from pipeline.window import Window

ACCOUNT = DEFAULT_ACCOUNT_ID
GATEWAY = DEFAULT_GATEWAY_ID
BASE_URL = "http://emulator.test/client/v4"
DAY = datetime(2026, 11, 1, tzinfo=UTC)
DAY_MS = int(DAY.timestamp() * 1000)


def make_job(
    tmp_path: Path,
    *,
    base_url: str = BASE_URL,
    token: str = DEFAULT_READ_TOKEN,
    budget: str = "requests_per_period = 100000\nperiod = 300",
    extra: str = "",
) -> JobConfig:
    """A job file aimed at the emulator, with its own data dir and shared budget state."""
    text = (
        f'[gateway]\naccount_id = "{ACCOUNT}"\ngateway_id = "{GATEWAY}"\nbase_url = "{base_url}"\n'
        f'[store]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[budget]\nshared_state = "{tmp_path / "budget.sqlite"}"\n{budget}\n{extra}'
    )
    path = tmp_path / "job.toml"
    path.write_text(text, encoding="utf-8")
    return load_job(path, env={"CLOUDFLARE_API_TOKEN": token})


def logs_at(stamps: Iterable[int], seed: int = 0) -> list[dict[str, Any]]:
    """One realistic emulator log per created_at (epoch ms)."""
    rng = random.Random(seed)
    return [make_log(rng, ms) for ms in stamps]


class FakeTime:
    """A clock and a sleep that moves it: waiting costs nothing. Concurrent sleepers never make time
    run faster than the longest of them (so pacing measured with it is never flattered)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        target = self.now + max(0.0, seconds)
        await asyncio.sleep(0)
        self.now = max(self.now, target)


class Emulator:
    """The emulator app over an in-memory store."""

    def __init__(
        self,
        logs: Iterable[dict[str, Any]] = (),
        settings: EmulatorSettings | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Any] | None = None,
    ) -> None:
        self.store = EmulatorStore()
        self.store.ensure_gateway(ACCOUNT, GATEWAY)
        self.store.insert_logs(ACCOUNT, GATEWAY, list(logs))
        kwargs: dict[str, Any] = {"sleep": sleep or _yield}
        self.app = create_app(
            settings or EmulatorSettings(rate_limit_requests=10**6, latency_ms=1),
            self.store,
            *(() if clock is None else (clock,)),
            **kwargs,
        )
        self.control: EmulatorControl = self.app.state.control

    def ids(self, window: Window) -> list[str]:
        return self.store.ids_between(ACCOUNT, GATEWAY, window.start, window.end)

    def transport(self, before_list: Callable[[int], None] | None = None) -> Hooked:
        return Hooked(httpx.ASGITransport(self.app), before_list)


async def _yield(_seconds: float) -> None:
    """Emulated latency that costs no time but lets other requests run meanwhile."""
    for _ in range(3):
        await asyncio.sleep(0)


class Hooked(httpx.AsyncBaseTransport):
    """Calls ``before_list(n)`` before the n-th list request (from 0) reaches the emulator."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport, before_list: Callable[[int], None] | None
    ) -> None:
        self.inner = inner
        self.before_list = before_list
        self.lists = 0
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.method == "GET" and request.url.path.endswith("/logs"):
            if self.before_list is not None:
                self.before_list(self.lists)
            self.lists += 1
        return await self.inner.handle_async_request(request)


def extracted_ids(job: JobConfig) -> list[str]:
    """Every id in the job's extract files, duplicates included."""
    ids: list[str] = []
    for path in log_files(job.store.data_dir, job.gateway.gateway_id):
        ids.extend(pq.read_table(path, columns=["id"]).column("id").to_pylist())
    return ids
