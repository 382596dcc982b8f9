"""Load: every planned PATCH ends done, failed (with a reason) or gone; a re-run never re-sends done."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from loadkit import (
    CappedBudget,
    FakeApi,
    admin,
    emulator_job,
    make_job,
    make_run,
    new_log,
    no_feedback_logs,
    write_chosen,
    write_plan,
)

from pipeline.config import JobConfig
from pipeline.errors import AuthError
from pipeline.gateway.client import LogsClient, RequestBudget
from pipeline.gateway.retry import NO_WAIT
from pipeline.load import LoadProgress, LoadResult, load
from pipeline.state.journal import Journal
from pipeline.state.store import RunInfo


def run_load(
    job: JobConfig,
    run: RunInfo,
    api: FakeApi,
    budget: RequestBudget | None = None,
    **kw: Any,
) -> LoadResult:
    async def go() -> LoadResult:
        async with LogsClient(
            job.gateway, budget=budget, retry=NO_WAIT, transport=httpx.MockTransport(api)
        ) as client:
            return await load(job, run, client=client, **kw)

    return asyncio.run(go())


def setup(tmp_path: Path, n: int = 20) -> tuple[JobConfig, RunInfo, FakeApi]:
    job = make_job(tmp_path, "[budget]\nconcurrency = 4\n")
    run = make_run(job)
    api = FakeApi({f"l{i}": new_log(f"l{i}") for i in range(n)})
    write_plan(run, {f"l{i}": {"feedback": 1 if i % 2 else -1} for i in range(n)}, x="unchanged")
    return job, run, api


def test_load_sends_each_planned_body_once(tmp_path: Path) -> None:
    """Every patch row is sent exactly once with its planned body; unchanged rows are not sent."""
    job, run, api = setup(tmp_path)
    result = run_load(job, run, api)
    assert (result.total, result.patched, result.failed, result.gone, result.pending) == (
        20,
        20,
        0,
        0,
        0,
    )
    assert result.requests == 20
    assert sorted(log_id for log_id, _ in api.patches) == sorted(f"l{i}" for i in range(20))
    assert dict(api.patches)["l3"] == {"feedback": 1}
    assert sum(n for _, n in result.timeline) == 20
    saved = json.loads(run.paths.stage_result("load").read_text())
    assert {"patched", "failed", "gone", "requests", "rate_limited", "retries", "seconds"} <= set(
        saved
    )


def test_running_load_again_sends_nothing(tmp_path: Path) -> None:
    """A finished load run again makes no request and still reports the whole run."""
    job, run, api = setup(tmp_path)
    run_load(job, run, api)
    api.patches.clear()
    again = run_load(job, run, api)
    assert api.patches == []
    assert (again.patched, again.patched_now, again.skipped_done, again.invocations) == (
        20,
        0,
        20,
        2,
    )
    assert again.requests == 20  # accumulated over both invocations


def test_404_is_gone_and_5xx_after_retries_is_failed_with_the_reason(tmp_path: Path) -> None:
    """A deleted log is `gone`; a log the server keeps failing is `failed`, and a re-run retries it."""
    job, run, api = setup(tmp_path, n=6)
    api.fail = {"l1": 404, "l2": 503}
    result = run_load(job, run, api)
    assert (result.patched, result.failed, result.gone, result.pending) == (4, 1, 1, 0)
    failures = {f["log_id"]: f for f in result.failures}
    assert failures["l1"]["status"] == "gone"
    assert failures["l2"]["status"] == "failed"
    assert failures["l2"]["http_status"] == 503
    assert "503" in failures["l2"]["error"]
    assert result.retries == NO_WAIT.max_attempts - 1
    assert result.patched + result.failed + result.gone + result.pending == result.total

    api.fail = {"l1": 404}  # the server recovered
    api.patches.clear()
    again = run_load(job, run, api)
    assert [log_id for log_id, _ in api.patches] == ["l2"]  # not the done ones, not the gone one
    assert (again.patched, again.failed, again.gone) == (5, 0, 1)


def test_403_stops_at_once_and_raises(tmp_path: Path) -> None:
    """A token without Edit permission stops the load on the first refusal (exit code 3)."""
    job, run, api = setup(tmp_path, n=30)
    api.fail = {f"l{i}": 403 for i in range(30)}
    with pytest.raises(AuthError):
        run_load(job, run, api)
    assert len(api.patches) == 0
    assert len(api.requests) <= job.budget.concurrency
    saved = json.loads(run.paths.stage_result("load").read_text())
    assert saved["patched"] == 0
    assert saved["pending"] == 30


def test_budget_cap_stops_cleanly_and_the_next_run_continues(tmp_path: Path) -> None:
    """--max-requests stops the load with the rest pending; the same command again finishes it."""
    job, run, api = setup(tmp_path, n=25)
    first = run_load(job, run, api, budget=CappedBudget(10))
    assert first.stopped_early
    assert "max_requests" in (first.stop_reason or "")
    assert (first.patched, first.pending) == (10, 15)
    with Journal.open(job.store.data_dir, run.run_id) as journal:
        assert journal.counts()["sent"] == 0  # nothing in limbo: the stopped rows are pending
    second = run_load(job, run, api)
    assert not second.stopped_early
    assert (second.patched, second.pending) == (25, 0)
    sent = [log_id for log_id, _ in api.patches]
    assert len(sent) == len(set(sent)) == 25


def test_a_row_left_sent_by_a_crash_is_sent_again(tmp_path: Path) -> None:
    """A PATCH whose acknowledgement was lost in a crash is sent again (it is idempotent)."""
    job, run, api = setup(tmp_path, n=3)
    with Journal.open(job.store.data_dir, run.run_id) as journal:
        from pipeline.load import read_patches

        patches = read_patches(run)
        journal.sync(zip(patches["log_id"].to_list(), patches["body_hash"].to_list(), strict=True))
        journal.mark_sent("l0")
        journal.mark_done("l0")
        journal.mark_sent("l1")  # crash here
    result = run_load(job, run, api)
    assert sorted(log_id for log_id, _ in api.patches) == ["l1", "l2"]
    assert result.patched == 3


def test_progress_reports_done_against_total(tmp_path: Path) -> None:
    """The progress callback sees done/total, the rate and the budget; the last one is complete."""
    job, run, api = setup(tmp_path, n=8)
    seen: list[LoadProgress] = []
    ticks = iter(range(1000))
    run_load(job, run, api, progress=seen.append, clock=lambda: float(next(ticks)))
    assert seen
    last = seen[-1]
    assert (last.done, last.total) == (8, 8)
    assert last.budget_per_s == pytest.approx(job.budget.rate_per_second)
    assert last.eta_seconds == 0.0


# ---------------------------------------------------------------------------------------------
# Against the emulator over real HTTP


def quick_sleep_factory() -> Any:
    async def quick(seconds: float) -> None:
        # Retry backoff shrinks to almost nothing; the budget re-checks its clock after each wake,
        # so its pacing stays exact.
        await asyncio.sleep(min(seconds, 0.01))

    return quick


def plan_load_verify(job: JobConfig, run: RunInfo, **client_kw: Any) -> tuple[Any, Any, Any]:
    from pipeline.gateway import open_client
    from pipeline.plan import plan
    from pipeline.verify import verify

    async def go() -> tuple[Any, Any, Any]:
        async with open_client(job, **client_kw) as client:
            planned = await plan(job, run, client=client)
            loaded = await load(job, run, client=client)
            verified = await verify(job, run, client=client)
            return planned, loaded, verified

    return asyncio.run(go())


def test_budgeted_load_gets_no_429_from_a_scaled_down_limit(tmp_path: Path) -> None:
    """With the emulator's limit scaled down to 40 per second and 30 ms latency: no 429 at all."""
    from pipeline.emulator.server import running_emulator
    from pipeline.emulator.settings import EmulatorSettings

    logs = no_feedback_logs(60)
    settings = EmulatorSettings(rate_limit_requests=40, rate_limit_window=1.0, latency_ms=30)
    with running_emulator(settings, logs=logs) as emu:
        job = emulator_job(
            tmp_path, emu, 'requests_per_period = 40\nperiod = "1s"\nconcurrency = 4'
        )
        run = make_run(job)
        write_chosen(run, {log["id"]: 1 for log in logs})
        planned, loaded, verified = plan_load_verify(job, run)
        stats = admin(emu, "stats")
    assert planned.patch == loaded.patched == verified.verified == 60
    assert loaded.rate_limited == 0
    assert stats["rate_limited"] == 0
    assert stats["patches"] == {"total": 60, "distinct_logs": 60}


def test_with_5xx_and_dropped_connections_nothing_is_lost(tmp_path: Path) -> None:
    """5% server errors and 2% dropped connections: every change ends done or failed with a reason,
    every done change reads back, and the report's numbers add up."""
    from pipeline.emulator.server import running_emulator
    from pipeline.emulator.settings import EmulatorSettings
    from pipeline.report import build_report
    from pipeline.report.view import sums

    logs = no_feedback_logs(200)
    settings = EmulatorSettings(
        rate_limit_requests=100_000,
        rate_limit_window=60.0,
        error_rate=0.05,
        drop_rate=0.02,
        drop_after_write_rate=0.02,
        seed=11,
    )
    with running_emulator(settings, logs=logs) as emu:
        job = emulator_job(
            tmp_path, emu, 'requests_per_period = 100000\nperiod = "60s"\nconcurrency = 8'
        )
        run = make_run(job)
        write_chosen(run, {log["id"]: (1 if i % 2 else -1) for i, log in enumerate(logs)})
        planned, loaded, verified = plan_load_verify(job, run, sleep=quick_sleep_factory())
        stats = admin(emu, "stats")
    assert stats["faults"]["server_errors"] > 0 and stats["faults"]["dropped"] > 0
    assert planned.patch == 200
    assert loaded.patched + loaded.failed == 200 and loaded.pending == 0
    assert all(f["error"] for f in loaded.failures)
    assert loaded.retries > 0
    assert verified.verified == loaded.patched and verified.mismatched == 0
    with Journal.open(job.store.data_dir, run.run_id) as journal:
        statuses = {r.status for r in journal.rows()}
    assert statuses <= {"done", "failed"}
    report = build_report(job, run)
    assert all(ok for _, ok in sums(report.data))


@pytest.mark.slow
def test_a_load_killed_midway_resumes_without_resending_done_rows(tmp_path: Path) -> None:
    """SIGKILL in the middle of `aigw-feedback load`, then the same command: it completes, and the
    emulator saw exactly one PATCH for every row that was done before the kill."""
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    from pipeline.emulator.server import running_emulator
    from pipeline.emulator.settings import EmulatorSettings
    from pipeline.plan import plan

    logs = no_feedback_logs(150)
    settings = EmulatorSettings(rate_limit_requests=60, rate_limit_window=1.0, latency_ms=10)
    with running_emulator(settings, logs=logs) as emu:
        job = emulator_job(
            tmp_path, emu, 'requests_per_period = 60\nperiod = "1s"\nconcurrency = 4'
        )
        run = make_run(job)
        write_chosen(run, {log["id"]: 1 for log in logs})

        async def make_plan() -> Any:
            from pipeline.gateway import open_client

            async with open_client(job) as client:
                return await plan(job, run, client=client)

        assert asyncio.run(make_plan()).patch == 150
        command = [sys.executable, "-m", "pipeline", "load", str(job.path), "--run", run.run_id]
        env = {**os.environ, "CLOUDFLARE_API_TOKEN": emu.edit_token}
        state = job.store.data_dir / "state.sqlite"

        def done_rows() -> set[str]:
            if not state.exists():
                return set()
            with sqlite3.connect(state, timeout=5) as conn:
                try:
                    rows = conn.execute(
                        "SELECT log_id FROM load_journal WHERE run_id = ? AND status = 'done'",
                        (run.run_id,),
                    ).fetchall()
                except sqlite3.OperationalError:  # the table does not exist yet
                    return set()
            return {r[0] for r in rows}

        first = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        while len(done_rows()) < 40:
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
        if first.stderr:
            first.stderr.close()
        done_before = done_rows()
        assert 40 <= len(done_before) < 150

        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr
        patches = admin(emu, "patches")["by_log"]
    assert len(done_rows()) == 150
    assert set(patches) == {log["id"] for log in logs}
    assert all(patches[log_id] == 1 for log_id in done_before)
    # At most the rows in flight at the kill (concurrency 4) were sent twice.
    assert sum(patches.values()) <= 150 + job.budget.concurrency


def test_plan_load_verify_report_commands_chain(tmp_path: Path) -> None:
    """The per-stage commands, as a user types them, take a labeled run to a verified report."""
    from click.testing import CliRunner

    from pipeline.cli import cli
    from pipeline.emulator.server import running_emulator
    from pipeline.emulator.settings import EmulatorSettings

    logs = no_feedback_logs(30)
    with running_emulator(EmulatorSettings(rate_limit_requests=100_000), logs=logs) as emu:
        job = emulator_job(tmp_path, emu, "requests_per_period = 100000")
        run = make_run(job)
        write_chosen(run, {log["id"]: 1 for log in logs})
        runner = CliRunner(env={"CLOUDFLARE_API_TOKEN": emu.edit_token})
        args = [str(job.path), "--run", run.run_id]
        planned = runner.invoke(cli, ["plan", *args])
        assert planned.exit_code == 0, planned.output
        assert "30 to patch" in planned.output
        loaded = runner.invoke(cli, ["load", *args, "--quiet"])
        assert loaded.exit_code == 0, loaded.output
        assert "30/30 patched" in loaded.output
        verified = runner.invoke(cli, ["verify", *args])
        assert verified.exit_code == 0, verified.output
        assert "30/30 verified" in verified.output
    data_dir = str(job.store.data_dir)
    shown = runner.invoke(cli, ["report", run.run_id, "--data-dir", data_dir, "--format", "json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["status"] == "ok"
    html_path = runner.invoke(
        cli, ["report", run.run_id, "--data-dir", data_dir, "--format", "html"]
    )
    assert html_path.output.strip().endswith("report.html")


def test_load_command_exits_3_on_a_read_only_token(tmp_path: Path) -> None:
    """A token without AI Gateway Edit: exit code 3 and a hint about the token's permissions."""
    from click.testing import CliRunner

    from pipeline.cli import cli
    from pipeline.emulator.server import running_emulator
    from pipeline.emulator.settings import EmulatorSettings

    logs = no_feedback_logs(5)
    with running_emulator(EmulatorSettings(rate_limit_requests=100_000), logs=logs) as emu:
        job = emulator_job(tmp_path, emu, "requests_per_period = 100000")
        run = make_run(job)
        write_plan(run, {log["id"]: {"feedback": 1} for log in logs})
        runner = CliRunner(env={"CLOUDFLARE_API_TOKEN": emu.read_token})
        result = runner.invoke(cli, ["load", str(job.path), "--run", run.run_id, "--quiet"])
    assert result.exit_code == 3
    assert "Edit" in result.output
    assert emu.read_token not in result.output
