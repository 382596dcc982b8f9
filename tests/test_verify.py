"""Verify: a patched log counts as verified only when every sent field reads back equal."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
from loadkit import FakeApi, make_job, make_run, new_log, write_plan

from pipeline.config import JobConfig
from pipeline.gateway.client import LogsClient
from pipeline.gateway.retry import NO_WAIT
from pipeline.load import load
from pipeline.state.store import RunInfo
from pipeline.verify import VERIFY_SCHEMA, VerifyResult, verify


def setup(tmp_path: Path, n: int = 120) -> tuple[JobConfig, RunInfo, FakeApi]:
    job = make_job(tmp_path, "[verify]\nrecheck_wait = 5\nrecheck_attempts = 3\n")
    run = make_run(job)
    api = FakeApi({f"l{i:03}": new_log(f"l{i:03}", metadata='{"user":"u"}') for i in range(n)})
    bodies: dict[str, dict[str, Any]] = {
        f"l{i:03}": {"feedback": 1, "score": 90.0, "metadata": {"user": "u", "label_run": "r"}}
        for i in range(n)
    }
    write_plan(run, bodies)
    return job, run, api


def load_then_verify(
    job: JobConfig, run: RunInfo, api: FakeApi, before_verify: Any = None
) -> tuple[VerifyResult, list[float]]:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    async def go() -> VerifyResult:
        async with LogsClient(
            job.gateway, retry=NO_WAIT, transport=httpx.MockTransport(api)
        ) as client:
            await load(job, run, client=client)
            if before_verify is not None:
                before_verify()
            return await verify(job, run, client=client, sleep=fake_sleep)

    return asyncio.run(go()), slept


def test_everything_written_reads_back_verified_in_batches(tmp_path: Path) -> None:
    """120 patched logs are read back with 3 list requests, and all are verified."""
    job, run, api = setup(tmp_path)
    result, slept = load_then_verify(job, run, api)
    assert (result.verified, result.mismatched, result.unverifiable) == (120, 0, 0)
    assert result.requests == 3
    assert sum(n for _, n in result.timeline) == 3  # the report charts it second by second
    assert slept == []
    table = pq.read_table(run.paths.verify)
    assert table.schema.equals(VERIFY_SCHEMA)
    assert set(table.column("status").to_pylist()) == {"verified"}


def test_late_writes_are_verified_after_the_bounded_wait(tmp_path: Path) -> None:
    """With read-after-write lag, mismatches are re-read after the wait and end up verified."""
    job, run, api = setup(tmp_path, n=60)

    def lag() -> None:
        api.stale_reads = {f"l{i:03}": 2 for i in range(0, 60, 3)}  # 20 logs read stale twice

    result, slept = load_then_verify(job, run, api, before_verify=lag)
    assert (result.verified, result.mismatched, result.unverifiable) == (60, 0, 0)
    assert result.rechecks == 2
    assert slept == [5.0, 5.0]
    # first round: 2 list requests for 60 ids; re-checks read only the 20 stale ones.
    assert result.requests == 2 + 1 + 1


def test_a_value_that_never_lands_is_mismatched_with_the_reason(tmp_path: Path) -> None:
    """A log that keeps showing other values after every re-check is mismatched, saying what differs."""
    job, run, api = setup(tmp_path, n=3)

    def tamper() -> None:
        api.logs["l001"]["feedback"] = -1
        del api.logs["l002"]

    result, slept = load_then_verify(job, run, api, before_verify=tamper)
    assert (result.verified, result.mismatched, result.unverifiable) == (1, 1, 0)
    assert len(slept) == job.verify.recheck_attempts
    reasons = {m["log_id"]: m["reason"] for m in result.mismatches}
    assert reasons["l001"] == "feedback sent 1 read -1"


def test_a_log_deleted_after_its_patch_is_gone_not_mismatched(tmp_path: Path) -> None:
    """A log deleted between load and verify is `gone` (nothing left to label), like a 404 at
    load; it does not make the verification fail."""
    job, run, api = setup(tmp_path, n=3)

    def delete() -> None:
        del api.logs["l002"]

    result, _ = load_then_verify(job, run, api, before_verify=delete)
    assert (result.verified, result.mismatched, result.gone) == (2, 0, 1)
    assert result.ok
    reasons = {m["log_id"]: m["reason"] for m in result.mismatches}
    assert "no longer exists" in reasons["l002"]


def test_a_field_the_api_does_not_return_is_unverifiable_not_verified(tmp_path: Path) -> None:
    """If the response has no `score` field, a sent score cannot be verified — and is not counted so."""
    job, run, api = setup(tmp_path, n=4)
    api.drop_fields = {"score"}
    result, slept = load_then_verify(job, run, api)
    assert (result.verified, result.mismatched, result.unverifiable) == (0, 0, 4)
    assert slept == []
    assert result.mismatches[0]["reason"] == "the API response has no score field"


def test_read_after_write_lag_on_the_emulator_is_waited_out(tmp_path: Path) -> None:
    """Over real HTTP, writes that show up 30 s late are all verified after the bounded re-checks;
    the waiting is injected, so the test does not sleep."""
    from loadkit import emulator_job, no_feedback_logs, write_chosen

    from pipeline.emulator.server import running_emulator
    from pipeline.emulator.settings import EmulatorSettings
    from pipeline.gateway import open_client
    from pipeline.plan import plan

    now = [1_800_000_000.0]
    slept: list[float] = []

    async def advance(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    logs = no_feedback_logs(70)
    settings = EmulatorSettings(write_lag_seconds=30.0, rate_limit_requests=100_000)
    with running_emulator(settings, logs=logs, clock=lambda: now[0]) as emu:
        job = emulator_job(
            tmp_path,
            emu,
            "requests_per_period = 100000",
            extra="[verify]\nrecheck_wait = 10\nrecheck_attempts = 3\n",
        )
        run = make_run(job)
        write_chosen(run, {log["id"]: -1 for log in logs})

        async def go() -> VerifyResult:
            async with open_client(job) as client:
                await plan(job, run, client=client)
                await load(job, run, client=client)
                return await verify(job, run, client=client, sleep=advance)

        result = asyncio.run(go())
    assert (result.verified, result.mismatched, result.unverifiable) == (70, 0, 0)
    assert slept == [10.0, 10.0, 10.0]
    assert result.rechecks == 3


def test_a_429_from_another_limiter_during_verify_is_counted_by_its_code(tmp_path: Path) -> None:
    """Verify waits out a 429 (code 10040) and names that limiter in its result, as load does."""
    job, run, api = setup(tmp_path)
    state = {"verifying": False, "refused": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if state["verifying"] and not state["refused"] and request.method == "GET":
            state["refused"] += 1
            return httpx.Response(
                429,
                headers={"retry-after": "1"},
                json={"success": False, "errors": [{"code": 10040, "message": "slow down"}]},
            )
        return api(request)

    result, _ = load_then_verify(
        job, run, handler, before_verify=lambda: state.update(verifying=True)
    )
    assert result.verified == 120
    assert result.rate_limited_by == {"10040": 1}
