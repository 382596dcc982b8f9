"""The run lock: one run per job and gateway; a dead process's lock does not block the next night."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.errors import LockHeldError
from pipeline.state import lock

T0 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    """While a run holds the lock, another one is refused with the holder's pid, host and start."""
    with lock.run_lock(tmp_path, "nightly", "gw", now=T0) as held:
        lock.note_run(tmp_path, held, "20261126T020000Z-nightly-abcd")
        with pytest.raises(LockHeldError) as info:
            lock.acquire(tmp_path, "nightly", "gw")
    message = str(info.value)
    assert f"pid {held.pid}" in message
    assert held.host in message
    assert "2026-11-26 02:00:00Z" in message
    assert "20261126T020000Z-nightly-abcd" in message
    assert info.value.exit_code == 4


def test_lock_is_per_job_and_gateway(tmp_path: Path) -> None:
    """Another job, or the same job on another gateway, runs alongside."""
    with lock.run_lock(tmp_path, "nightly", "gw"):
        with lock.run_lock(tmp_path, "nightly", "other-gw"):
            pass
        with lock.run_lock(tmp_path, "backfill", "gw"):
            pass


def test_lock_is_released_after_the_block_even_on_error(tmp_path: Path) -> None:
    """A run that fails does not leave its lock behind."""
    with pytest.raises(RuntimeError), lock.run_lock(tmp_path, "nightly", "gw"):
        raise RuntimeError("boom")
    assert lock.current_holder(tmp_path, "nightly", "gw") is None
    with lock.run_lock(tmp_path, "nightly", "gw"):
        pass


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    """A lock left by a process that died (same host) does not block the next run."""
    gone = dead_pid()
    lock.acquire(tmp_path, "nightly", "gw", pid=gone, now=T0)
    assert lock.current_holder(tmp_path, "nightly", "gw") is not None
    with lock.run_lock(tmp_path, "nightly", "gw") as mine:
        holder = lock.current_holder(tmp_path, "nightly", "gw")
        assert holder is not None
        assert holder.pid == mine.pid != gone


def test_lock_from_another_host_is_never_stolen(tmp_path: Path) -> None:
    """A lock held on another machine cannot be checked, so it is reported, not taken over."""
    lock.acquire(tmp_path, "nightly", "gw", pid=dead_pid(), host="elsewhere.example")
    with pytest.raises(LockHeldError, match=r"elsewhere\.example.*another host"):
        lock.acquire(tmp_path, "nightly", "gw")


def test_a_reused_pid_counts_as_dead(tmp_path: Path) -> None:
    """If the recorded pid now belongs to a younger process, the lock is stale."""
    mine = lock.process_start(lock.os.getpid())
    if mine is None:
        pytest.skip("no /proc here: start times are not available")
    assert lock.pid_alive(lock.os.getpid(), mine)
    assert not lock.pid_alive(lock.os.getpid(), "0")


@pytest.mark.slow
def test_second_concurrent_run_exits_4_naming_the_holder(tmp_path: Path) -> None:
    """While a run is going, a second `run` of the same job exits 4 and says who holds the lock."""
    import os
    import time

    from click.testing import CliRunner

    from pipeline.cli import cli
    from tests.runkit import D0, emulator, load, write_job

    with emulator(logs_per_day=200, days=1, latency_ms=20) as emu:
        path = write_job(tmp_path, emu.base_url)
        data_dir = load(path, emu.edit_token).store.data_dir
        env = {**os.environ, "AIGW_TEST_TOKEN": emu.edit_token}
        argv = ["run", str(path), "--window", str(D0.date()), "--quiet"]
        first = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while (holder := lock.current_holder(data_dir, "nightly", "test-gateway")) is None:
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        second = CliRunner().invoke(cli, argv, env={"AIGW_TEST_TOKEN": emu.edit_token})
        assert first.wait(timeout=60) == 0
    assert second.exit_code == 4, second.output
    assert f"pid {first.pid}" in second.stderr
    assert holder.host in second.stderr
    assert "already running" in second.stderr
    assert "Traceback" not in second.stderr


def test_run_takes_over_a_lock_left_by_a_dead_process(tmp_path: Path) -> None:
    """A crashed run's lock does not stop tomorrow's run: it is taken over."""
    import asyncio

    from pipeline.run import run_job
    from tests.runkit import emulator, load, night, write_job

    with emulator(days=1) as emu:
        job = load(write_job(tmp_path, emu.base_url), emu.edit_token)
        lock.acquire(job.store.data_dir, "nightly", "test-gateway", pid=dead_pid(), now=T0)
        result = asyncio.run(run_job(job, now=night(0)))
    assert result.status == "ok"
    assert lock.current_holder(job.store.data_dir, "nightly", "test-gateway") is None
