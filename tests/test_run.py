"""`aigw-feedback run` end to end against the emulator over real HTTP: runs, resumes, watermark."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline.errors import UsageError
from pipeline.run import run_job
from pipeline.run_result import RunResult
from pipeline.state import history
from pipeline.window import Window, day_window, parse_window
from tests.runkit import (
    D0,
    DAY,
    FAST,
    drop_csv,
    emulator,
    load,
    log_ids,
    night,
    patches_by_log,
    write_job,
)


def run(job: object, **kwargs: object) -> RunResult:
    return asyncio.run(run_job(job, **kwargs))  # type: ignore[arg-type]


def test_nightly_run_verifies_every_planned_change(tmp_path: Path) -> None:
    """A nightly run labels yesterday, writes every planned change once and verifies each one."""
    with emulator() as emu:
        job = load(write_job(tmp_path, emu.base_url), emu.edit_token)
        result = run(job, now=night(0))
        sent = patches_by_log(emu)
    assert result.status == "ok" and result.exit_code == 0
    assert result.window == day_window(D0.date())
    planned = result.stages.plan.patch
    assert planned > 20
    assert result.stages.load.patched == planned
    assert result.stages.verify.verified == planned
    assert len(sent) == planned and set(sent.values()) == {1}
    assert result.report is not None and result.report.exists()
    report = json.loads(result.report.with_suffix(".json").read_text())
    assert report["status"] == "ok"
    assert result.watermark == D0 + DAY
    [record] = history.list_runs(job.store.data_dir)
    assert (record.run_id, record.status, record.mode) == (result.run_id, "ok", "nightly")
    assert record.counts["patched"] == planned


def test_dry_run_sends_no_patch_and_can_be_applied_later(tmp_path: Path) -> None:
    """--dry-run plans and prices the changes without writing; --run on it applies that plan."""
    with emulator() as emu:
        job = load(write_job(tmp_path, emu.base_url), emu.edit_token)
        csv_file = drop_csv(job, "review.csv", dict.fromkeys(log_ids()[:3], 1))
        dry = run(job, now=night(0), dry_run=True)
        assert patches_by_log(emu) == {}
        assert csv_file.exists()  # a dry run leaves the analysts' files for the real run
        assert dry.status == "dry_run" and dry.exit_code == 0
        assert dry.stages.plan.requests_needed >= dry.stages.plan.patch > 0
        assert dry.stages.load is None
        assert "nothing written" in dry.summary()
        assert history.get_watermark(job.store.data_dir, "nightly", "test-gateway") is None

        applied = run(job, run_id=dry.run_id, now=night(0))
        sent = patches_by_log(emu)
    assert applied.skipped == ("extract", "label", "plan")
    assert applied.status == "ok"
    assert len(sent) == dry.stages.plan.patch
    # A nightly run applied later still moves the watermark: its window starts the coverage.
    assert applied.watermark == D0 + DAY


def test_capped_run_resumes_without_resending(tmp_path: Path) -> None:
    """A run stopped by --max-requests is partial; --run finishes it and no log is PATCHed twice."""
    with emulator(logs_per_day=80, days=1) as emu:
        path = write_job(tmp_path, emu.base_url)
        capped = run(load(path, emu.edit_token, max_requests=20), now=night(0))
        first = patches_by_log(emu)
        assert capped.status == "partial" and capped.exit_code == 1
        assert capped.stopped is not None
        assert 0 < len(first) < capped.stages.plan.patch
        assert capped.watermark == D0  # not verified: the watermark stays at the night's start
        assert f"--run {capped.run_id}" in capped.summary()

        resumed = run(load(path, emu.edit_token), run_id=capped.run_id, now=night(0))
        sent = patches_by_log(emu)
    assert resumed.status == "ok"
    assert resumed.skipped == ("extract", "label", "plan")
    assert len(sent) == resumed.stages.plan.patch
    assert max(sent.values()) == 1  # nothing acknowledged was sent again
    assert resumed.stages.load.skipped_done == len(first)
    assert resumed.watermark == D0 + DAY


def test_skipped_nights_are_caught_up_in_one_run(tmp_path: Path) -> None:
    """After two missed nights, the next nightly run covers all three days."""
    with emulator(logs_per_day=30, days=4) as emu:
        job = load(write_job(tmp_path, emu.base_url), emu.edit_token)
        first = run(job, now=night(0))
        assert first.window == day_window(D0.date())
        # nights 1 and 2 never ran
        catch_up = run(job, now=night(3))
    assert catch_up.window.start == D0 + DAY
    assert catch_up.window.end == D0 + 4 * DAY
    assert len(catch_up.stages.extract.days) == 3
    assert catch_up.status == "ok"
    assert catch_up.watermark == D0 + 4 * DAY


def test_watermark_moves_only_after_verification(tmp_path: Path) -> None:
    """Writes that never read back right make the run partial, and the watermark stays put."""
    with emulator(write_lag_seconds=3600) as emu:
        job = load(write_job(tmp_path, emu.base_url), emu.edit_token)
        result = run(job, now=night(0))
    assert result.stages.verify.mismatched > 0
    assert result.status == "partial" and result.exit_code == 1
    assert result.watermark == D0  # where this night starts, so the next run covers it again
    assert history.get_watermark(job.store.data_dir, "nightly", "test-gateway") == D0


def test_next_night_finishes_an_unfinished_run_first(tmp_path: Path) -> None:
    """A capped nightly run is finished by the next night's run before it moves on."""
    with emulator(logs_per_day=80, days=2) as emu:
        path = write_job(tmp_path, emu.base_url)
        capped = run(load(path, emu.edit_token, max_requests=20), now=night(0))
        assert capped.status == "partial"
        following = run(load(path, emu.edit_token), now=night(1))
        sent = patches_by_log(emu)
    [previous] = following.previous
    assert previous.run_id == capped.run_id
    assert previous.status == "ok"
    assert following.window == day_window((D0 + DAY).date())
    assert following.status == "ok"
    assert following.watermark == D0 + 2 * DAY
    assert max(sent.values()) == 1
    assert "--run" not in following.summary().splitlines()[-1]


def test_a_run_that_keeps_failing_is_retried_once_then_left_behind(tmp_path: Path) -> None:
    """A failed night is retried by the next one; after that new nights go on without it."""
    from pipeline.errors import AuthError

    with emulator(days=3) as emu:
        path = write_job(tmp_path, emu.base_url)
        refused = load(path, emu.read_token)  # AI Gateway Read only: every PATCH is refused
        with pytest.raises(AuthError):
            run(refused, now=night(0))
        [first] = history.list_runs(refused.store.data_dir)
        with pytest.raises(AuthError):
            run(refused, now=night(1))  # retries the failed run first, which fails again
        assert [r.run_id for r in history.list_runs(refused.store.data_dir)] == [first.run_id]
        fixed = run(load(path, emu.edit_token), now=night(2))
    assert fixed.previous == ()  # retried once already: not resumed again
    assert fixed.window == Window(D0, D0 + 3 * DAY)  # but its nights are covered again
    assert fixed.status == "ok"
    assert fixed.watermark == D0 + 3 * DAY
    assert history.get_run(refused.store.data_dir, first.run_id).status == "failed"  # type: ignore[union-attr]


def test_explicit_window_leaves_a_missing_watermark_alone(tmp_path: Path) -> None:
    """Running an old day by hand does not make the next nightly run catch up from it."""
    with emulator(days=2) as emu:
        job = load(write_job(tmp_path, emu.base_url), emu.edit_token)
        window = parse_window(str(D0.date()), now=night(3))
        result = run(job, window=window, now=night(3))
    assert result.status == "ok" and result.mode == "window"
    assert history.get_watermark(job.store.data_dir, "nightly", "test-gateway") is None


def test_run_and_window_together_is_a_usage_error(tmp_path: Path) -> None:
    """--run keeps the run's own window, so a --window beside it is refused."""
    with emulator(days=1) as emu:
        job = load(write_job(tmp_path, emu.base_url), emu.edit_token)
        with pytest.raises(UsageError, match="--window"):
            run(job, run_id="x", window=day_window(D0.date()))


def test_resumed_run_of_another_job_is_refused(tmp_path: Path) -> None:
    """--run with the id of another job's run says whose run it is."""
    with emulator(days=1) as emu:
        nightly = load(write_job(tmp_path, emu.base_url), emu.edit_token)
        done = run(nightly, now=night(0))
        other = load(write_job(tmp_path, emu.base_url, name="other"), emu.edit_token)
        with pytest.raises(UsageError, match="belongs to job 'nightly'"):
            run(other, run_id=done.run_id)


def test_plan_file_of_a_run_lists_its_changes(tmp_path: Path) -> None:
    """The run folder keeps the plan, so `report` and a resume can always read it."""
    with emulator(days=1) as emu:
        job = load(write_job(tmp_path, emu.base_url), emu.edit_token)
        result = run(job, now=night(0))
    plan = pl.read_parquet(job.store.data_dir / "runs" / result.run_id / "plan.parquet")
    assert plan.filter(pl.col("action") == "patch").height == result.stages.plan.patch


@pytest.mark.slow
def test_run_killed_midway_resumes_with_nothing_resent(tmp_path: Path) -> None:
    """SIGKILL during the load, then `--run`: it completes, and no acknowledged change is re-sent."""
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    with emulator(logs_per_day=300, days=1, latency_ms=20) as emu:
        path = write_job(tmp_path, emu.base_url)
        job = load(path, emu.edit_token)
        state = job.store.data_dir / "state.sqlite"
        env = {**os.environ, "AIGW_TEST_TOKEN": emu.edit_token}
        command = [sys.executable, "-m", "pipeline", "run", str(path), "--window", str(D0.date())]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def done_ids() -> set[str]:
            if not state.exists():
                return set()
            with sqlite3.connect(state) as db:
                try:
                    rows = db.execute("SELECT log_id FROM load_journal WHERE status = 'done'")
                    return {r[0] for r in rows}
                except sqlite3.OperationalError:  # the journal table is not there yet
                    return set()

        deadline = time.monotonic() + 60
        while len(done_ids()) < 40:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the load never got going"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        acknowledged = done_ids()
        [record] = history.list_runs(job.store.data_dir)
        assert record.status == "running"  # killed: nobody recorded an end

        resumed = run(job, run_id=record.run_id, now=night(0))
        sent = patches_by_log(emu)
    if proc.stderr:
        proc.stderr.close()
    assert resumed.status == "ok"
    assert len(sent) == resumed.stages.plan.patch
    assert all(sent[log_id] == 1 for log_id in acknowledged)
    resent = [log_id for log_id, n in sent.items() if n > 1]
    # Only changes in flight at the kill (sent, never acknowledged) may go again: at most one per
    # worker, and sending the same body twice is harmless.
    assert len(resent) <= job.budget.concurrency


def test_every_stage_result_round_trips_through_its_file(tmp_path: Path) -> None:
    """Each stage's result file reads back as the same typed result (no field lost or renamed)."""
    from pipeline.extract import ExtractResult
    from pipeline.label import LabelResult
    from pipeline.load import LoadResult
    from pipeline.plan import PlanResult
    from pipeline.verify import VerifyResult

    with emulator(days=1) as emu:
        job = load(write_job(tmp_path, emu.base_url), emu.edit_token)
        result = run(job, now=night(0))
    folder = job.store.data_dir / "runs" / result.run_id
    for stage, cls in (
        ("label", LabelResult),
        ("plan", PlanResult),
        ("load", LoadResult),
        ("verify", VerifyResult),
        ("extract", ExtractResult),
    ):
        data = json.loads((folder / f"{stage}.result.json").read_text())
        typed = cls.from_json(data)  # type: ignore[attr-defined]
        assert json.loads(json.dumps(typed.to_json(), default=str)) == data, stage


def test_another_limiter_is_waited_out_and_named_in_the_report(
    tmp_path: Path, emulator_store: Any, emulator_clock: Any
) -> None:
    """A second Cloudflare limiter (429 code 10040, Retry-After 60 s, while Ratelimit shows plenty
    left): the run pauses for its Retry-After, finishes ok, and the report names that limiter
    apart from the global limit."""
    import httpx

    from pipeline.emulator.app import create_app
    from pipeline.emulator.settings import DEFAULT_EDIT_TOKEN, DEFAULT_GATEWAY_ID, EmulatorSettings

    settings = EmulatorSettings.of(
        rate_limit_requests=FAST, account_limit_requests=40, account_limit_window=60
    )
    app = create_app(settings, emulator_store, emulator_clock, sleep=emulator_clock.sleep)
    path = write_job(tmp_path, "http://emulator.test/client/v4", gateway_id=DEFAULT_GATEWAY_ID)
    job = load(path, DEFAULT_EDIT_TOKEN)
    started = emulator_clock()
    result = run(
        job,
        window=parse_window("2026-11-20", now=D0 + 30 * DAY),
        transport=httpx.ASGITransport(app=app),
        clock=emulator_clock,
        sleep=emulator_clock.sleep,
    )
    assert result.status == "ok", result.summary()
    assert result.stages.load is not None
    assert result.stages.load.rate_limited_by.get("10040", 0) >= 1
    assert "971" not in result.stages.load.rate_limited_by
    # Each refusal was waited out for its whole Retry-After (60 s): the limiter had to refuse only
    # a few requests (a client that retried after a second would be refused ~30 times).
    assert result.stages.load.rate_limited_by["10040"] <= 4
    assert emulator_clock() - started >= 60
    report = json.loads((result.report or Path()).with_suffix(".json").read_text())
    assert "another Cloudflare limiter (code 10040" in report["load"]["rate_limiters"]
