"""The request budget: the job never sends faster than the token allows, whoever else uses it."""

from __future__ import annotations

import asyncio
import bisect
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import BudgetConfig
from pipeline.emulator.server import running_emulator
from pipeline.emulator.settings import EmulatorSettings
from pipeline.errors import BudgetExhausted
from pipeline.gateway.budget import Budget, budget_key
from tests.extractkit import FakeTime, logs_at, make_job

TOKEN = "s3cret-token-value"


def budget(
    tmp_path: Path, time: FakeTime, key: str = "k", state: str = "budget.sqlite", **config: object
) -> Budget:
    settings = {"requests_per_period": 60, "period_seconds": 10.0, "concurrency": 4, **config}
    return Budget(
        BudgetConfig(**settings),  # type: ignore[arg-type]
        key=key,
        clock=time,
        sleep=time.sleep,
        state_path=tmp_path / state,
    )


async def send(b: Budget, time: FakeTime, n: int, workers: int, sent: list[float]) -> None:
    """`workers` tasks share `n` requests; each request takes 0.05 s once its slot is granted."""
    remaining = [n]

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            async with b.slot():
                sent.append(time())
                await time.sleep(0.05)

    await asyncio.gather(*(worker() for _ in range(workers)))


def most_in_any_window(times: list[float], width: float) -> int:
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, t + width) - i for i, t in enumerate(ordered))


def test_pacing_never_exceeds_the_rate_and_uses_nearly_all_of_it(tmp_path: Path) -> None:
    """With a fake clock: 300 requests from 4 workers at 60 per 10 s (headroom 0.9 -> 5.4/s) never
    put more than 54 in any 10 s, never burst past 4, and keep up the pace (no idle budget)."""
    time = FakeTime()
    b = budget(tmp_path, time)
    sent: list[float] = []

    asyncio.run(send(b, time, 300, 4, sent))

    assert len(sent) == 300
    assert most_in_any_window(sent, 10.0) <= 54
    assert most_in_any_window(sent, 1.0) <= 5.4 + 4
    rate = (len(sent) - 4) / (max(sent) - min(sent))
    assert 0.95 * 5.4 <= rate <= 5.4 * 1.001
    assert b.stats.requests == 300 and b.stats.waits > 0
    assert b.report()["budget_per_s"] == pytest.approx(5.4)


def test_two_jobs_on_one_token_share_one_budget(tmp_path: Path) -> None:
    """Two budgets on the same token (two processes) together stay within the token's rate."""
    time = FakeTime()
    first, second = budget(tmp_path, time), budget(tmp_path, time)
    sent: list[float] = []

    async def both() -> None:
        await asyncio.gather(send(first, time, 150, 2, sent), send(second, time, 150, 2, sent))

    asyncio.run(both())

    assert len(sent) == 300
    assert most_in_any_window(sent, 10.0) <= 54
    assert first.stats.requests == second.stats.requests == 150


def test_other_tokens_have_their_own_budget(tmp_path: Path) -> None:
    """Budgets keyed by different tokens do not slow each other down."""
    time = FakeTime()
    one, other = budget(tmp_path, time, key="a"), budget(tmp_path, time, key="b")
    sent: list[float] = []

    async def both() -> None:
        await asyncio.gather(send(one, time, 54, 4, sent), send(other, time, 54, 4, sent))

    asyncio.run(both())

    assert max(sent) - min(sent) < 11  # each alone needs ~10 s at 5.4/s


def test_a_429_pauses_every_worker_until_retry_after_even_five_minutes(tmp_path: Path) -> None:
    """After a 429 with Retry-After: 300 no worker of any process sends for 300 s; then all go on."""
    time = FakeTime()
    b, other_process = budget(tmp_path, time), budget(tmp_path, time)
    sent: list[float] = []

    async def scenario() -> None:
        async with b.slot():
            b.observe(429, {"retry-after": "300"})
        blocked_at = time()
        await send(other_process, time, 3, 2, sent)
        assert min(sent) >= blocked_at + 300

    asyncio.run(scenario())

    assert b.stats.rate_limited == 1
    assert other_process.stats.paused_seconds >= 300


def test_fewer_remaining_than_expected_slows_the_pace(tmp_path: Path) -> None:
    """When the server says only 20 of 60 remain although this job sent 2, someone else uses the
    token: the job lowers its window and pace by what the other user takes."""
    time = FakeTime()
    b = budget(tmp_path, time)
    sent: list[float] = []
    start = time()

    async def scenario() -> None:
        for _ in range(2):
            async with b.slot():
                pass
        b.observe(200, {"ratelimit": '"default";r=20;t=10', "ratelimit-policy": "q=60;w=10"})
        await send(b, time, 40, 1, sent)

    asyncio.run(scenario())

    assert b.stats.slowdowns == 1
    # 54 allowed minus 37 taken by someone else leaves 17 per 10 s, 2 of them already sent. The
    # sighting counts for one window (a real job sees a fresh one on every answer).
    assert len([t for t in sent if t < start + 10]) <= 15
    assert len([t for t in sent if t < start + 20]) >= 30


def test_a_smaller_server_policy_wins_over_the_configured_rate(tmp_path: Path) -> None:
    """A job configured for 1200/300 s talking to a token limited to 10/10 s paces at 0.9/s."""
    time = FakeTime()
    b = budget(tmp_path, time, requests_per_period=1200, period_seconds=300.0)
    b.observe(200, {"ratelimit": '"default";r=9;t=10', "ratelimit-policy": '"default";q=10;w=10'})
    assert b.rate_per_second == pytest.approx(0.9)


def test_the_server_saying_nothing_remains_pauses_until_its_reset(tmp_path: Path) -> None:
    """r=0 means the next request would be refused: wait t seconds first."""
    time = FakeTime()
    b = budget(tmp_path, time)
    start = time()
    sent: list[float] = []

    async def scenario() -> None:
        b.observe(200, {"ratelimit": '"default";r=0;t=7'})
        await send(b, time, 1, 1, sent)

    asyncio.run(scenario())
    assert sent[0] >= start + 7


def test_max_requests_stops_the_run_cleanly(tmp_path: Path) -> None:
    """The request cap raises BudgetExhausted on the first request over it, saying how to go on."""
    time = FakeTime()
    b = budget(tmp_path, time, max_requests=3)
    sent: list[float] = []
    with pytest.raises(BudgetExhausted, match="--max-requests"):
        asyncio.run(send(b, time, 10, 1, sent))
    assert len(sent) == 3


def test_max_duration_stops_instead_of_waiting_past_it(tmp_path: Path) -> None:
    """With 60 s left, a 5-minute 429 pause ends the run now instead of sleeping past the cap."""
    time = FakeTime()
    b = budget(tmp_path, time, max_duration_seconds=60.0)
    b.observe(429, {"retry-after": "300"})
    start = time()
    with pytest.raises(BudgetExhausted, match="time cap"):
        asyncio.run(send(b, time, 1, 1, []))
    assert time() == start


def test_state_from_a_clock_far_away_does_not_block(tmp_path: Path) -> None:
    """A state file last written by a clock hours ahead (a test, a clock set back) is not obeyed."""
    future = FakeTime(start=1_900_000_000.0)
    ahead = budget(tmp_path, future)
    asyncio.run(send(ahead, future, 60, 4, []))
    ahead.observe(429, {"retry-after": "300"})
    now = FakeTime()
    b = budget(tmp_path, now)
    sent: list[float] = []
    asyncio.run(send(b, now, 5, 1, sent))
    assert max(sent) - 1_800_000_000.0 < 2


def test_the_state_file_holds_a_hash_never_the_token(tmp_path: Path) -> None:
    """Processes meet through a file keyed by a hash of the token; the token is not in it."""
    time = FakeTime()
    key = budget_key("https://api.cloudflare.com/client/v4", TOKEN)
    b = budget(tmp_path, time, key=key)
    asyncio.run(send(b, time, 3, 1, []))
    b.close()
    for path in tmp_path.iterdir():
        assert TOKEN.encode() not in path.read_bytes()
    rows = sqlite3.connect(tmp_path / "budget.sqlite").execute("SELECT key FROM budget_state")
    assert [r[0] for r in rows] == [key]
    assert TOKEN not in repr(b)
    assert budget_key("https://api.cloudflare.com/client/v4", "other") != key


@pytest.mark.slow
def test_two_processes_on_one_token_get_no_429_from_a_real_server(tmp_path: Path) -> None:
    """Two `aigw-feedback extract` processes share one token against the emulator over HTTP with
    a 20-per-2-s limit: together they stay under it, and the emulator counts zero 429s."""
    day = 1_793_491_200_000  # 2026-11-01
    logs = logs_at(range(day, day + 600 * 1000, 1000))
    settings = EmulatorSettings(rate_limit_requests=20, rate_limit_window=2.0)
    with running_emulator(settings, logs=logs) as server:
        job = make_job(
            tmp_path,
            base_url=server.base_url,
            budget="requests_per_period = 20\nperiod = 2\nconcurrency = 2",
        )
        env = {**os.environ, "CLOUDFLARE_API_TOKEN": server.read_token}
        command = [sys.executable, "-m", "pipeline", "extract", str(job.path), "--quiet"]
        window = ["--window", "2026-11-01"]
        processes = [
            subprocess.Popen(
                [*command, *window, "--data-dir", str(tmp_path / name)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in ("a", "b")
        ]
        outputs = [p.communicate(timeout=60) for p in processes]
        snapshot = server.control.snapshot()

    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
        assert "600 logs" in out
    assert snapshot["rate_limited"] == 0
    assert snapshot["requests"]["list"]["200"] >= 2 * 13
