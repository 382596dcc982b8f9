"""`aigw-feedback backfill`: a month of days within a request cap, continued by running it again."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path

import pytest

from pipeline.backfill import BackfillResult, backfill, day_runs
from pipeline.config import JobConfig
from pipeline.errors import UsageError
from pipeline.state import history
from tests.runkit import D0, emulator, load, night, patches_by_log, write_job

FIRST = D0.date()
LAST = FIRST + timedelta(days=29)
NOW = night(40)


def go(job: JobConfig, **kwargs: object) -> BackfillResult:
    return asyncio.run(backfill(job, start=FIRST, end=LAST, now=NOW, **kwargs))  # type: ignore[arg-type]


def test_thirty_days_stop_at_the_cap_and_continue_when_run_again(tmp_path: Path) -> None:
    """The cap stops the backfill mid-way; the same command again finishes without re-sending."""
    with emulator(logs_per_day=6, days=30) as emu:
        job = load(write_job(tmp_path, emu.base_url, name="backfill"), emu.edit_token)
        before = emu.control.snapshot()["total_requests"]
        first = go(job, max_requests=80)
        used = emu.control.snapshot()["total_requests"] - before
        sent_first = patches_by_log(emu)

        assert first.stopped is not None and first.exit_code == 1
        assert used <= 80  # the cap holds across all the days of the invocation
        assert first.requests == used
        statuses = [d.status for d in first.days]
        done = statuses.count("ok")
        assert 0 < done < 30
        assert statuses[:done] == ["ok"] * done
        stopped_day = first.days[done]
        assert stopped_day.status == "partial" and stopped_day.run_id is not None
        assert set(statuses[done + 1 :]) <= {"not_started"}
        assert "Run the same command again" in first.summary()

        second = go(job, max_requests=10_000)
        sent = patches_by_log(emu)

    assert second.exit_code == 0 and second.stopped is None
    assert [d.status for d in second.days[:done]] == ["done_before"] * done
    assert second.days[done].run_id == stopped_day.run_id  # the stopped day resumed its run
    assert all(d.status == "ok" for d in second.days[done:])
    assert second.verified == 30
    assert max(sent.values()) == 1  # nothing was sent twice
    assert set(sent_first) <= set(sent)
    # One run per day, each verified; the nightly watermark was never touched.
    runs = day_runs(job, FIRST, LAST)
    assert all(r is not None and r.status == "ok" and r.mode == "backfill" for r in runs.values())
    assert history.get_watermark(job.store.data_dir, "backfill", "test-gateway") is None


def test_running_a_finished_backfill_again_sends_nothing(tmp_path: Path) -> None:
    """Every day verified: the same command again is a no-op that exits 0."""
    with emulator(logs_per_day=6, days=5) as emu:
        job = load(write_job(tmp_path, emu.base_url, name="backfill"), emu.edit_token)
        end = FIRST + timedelta(days=4)
        asyncio.run(backfill(job, start=FIRST, end=end, now=NOW))
        before = emu.control.snapshot()["total_requests"]
        again = asyncio.run(backfill(job, start=FIRST, end=end, now=NOW))
        assert emu.control.snapshot()["total_requests"] == before
    assert again.exit_code == 0 and again.requests == 0
    assert {d.status for d in again.days} == {"done_before"}
    assert "5 of 5 days verified" in again.summary()


def test_backfill_dry_run_plans_every_day_and_writes_nothing(tmp_path: Path) -> None:
    """--dry-run plans each day; the real backfill afterwards applies those plans."""
    with emulator(logs_per_day=6, days=3) as emu:
        job = load(write_job(tmp_path, emu.base_url, name="backfill"), emu.edit_token)
        end = FIRST + timedelta(days=2)
        dry = asyncio.run(backfill(job, start=FIRST, end=end, now=NOW, dry_run=True))
        assert patches_by_log(emu) == {}
        real = asyncio.run(backfill(job, start=FIRST, end=end, now=NOW))
    assert {d.status for d in dry.days} == {"dry_run"} and dry.exit_code == 0
    assert [d.run_id for d in real.days] == [d.run_id for d in dry.days]
    assert real.verified == 3


def test_backfill_refuses_days_that_are_not_complete(tmp_path: Path) -> None:
    """A day still filling in belongs to the nightly job, not to a backfill."""
    with emulator(days=1) as emu:
        job = load(write_job(tmp_path, emu.base_url, name="backfill"), emu.edit_token)
        today = night(0).date()
        with pytest.raises(UsageError, match="not a complete day"):
            asyncio.run(backfill(job, start=FIRST, end=today, now=night(0)))
        with pytest.raises(UsageError, match="before --from"):
            asyncio.run(backfill(job, start=FIRST, end=date(2026, 1, 1), now=night(0)))
