"""The nightly run does check's checks for free: what its own answers said is in outcome.json."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from pipeline.emulator.app import create_app
from pipeline.emulator.settings import DEFAULT_EDIT_TOKEN, DEFAULT_GATEWAY_ID, EmulatorSettings
from pipeline.emulator.store import EmulatorStore
from pipeline.run import run_job
from pipeline.run_result import RunResult
from pipeline.window import parse_window
from tests.runkit import D0, DAY, FAST, load, write_job


def _run(
    tmp_path: Path, store: EmulatorStore, clock: Any, day: str, limit: int = FAST
) -> RunResult:
    app = create_app(
        EmulatorSettings.of(rate_limit_requests=limit), store, clock, sleep=clock.sleep
    )
    path = write_job(tmp_path, "http://emulator.test/client/v4", gateway_id=DEFAULT_GATEWAY_ID)
    return asyncio.run(
        run_job(
            load(path, DEFAULT_EDIT_TOKEN),
            window=parse_window(day, now=D0 + 30 * DAY),
            transport=httpx.ASGITransport(app=app),
            clock=clock,
            sleep=clock.sleep,
        )
    )


def _learned(result: RunResult) -> list[str]:
    folder = (result.report or Path()).parent
    notes: list[str] = json.loads((folder / "outcome.json").read_text())["learned"]
    return notes


def test_a_window_without_logs_says_what_it_may_mean(
    tmp_path: Path, emulator_store: EmulatorStore, emulator_clock: Any
) -> None:
    """A day the gateway logged nothing: nothing_to_do, and a note pointing at logging and check."""
    result = _run(tmp_path, emulator_store, emulator_clock, "2026-11-25")
    assert result.status == "nothing_to_do"
    (note,) = [n for n in _learned(result) if "held no logs" in n]
    assert "new logging" in note and "aigw-feedback check" in note
    report = (result.report or Path()).with_suffix(".json")
    assert note in json.loads(report.read_text())["notes"]
    assert "held no logs" in (result.report or Path()).read_text()
    assert "held no logs" in report.with_suffix(".md").read_text()


def test_a_server_limit_unlike_the_jobs_is_named(
    tmp_path: Path, emulator_store: EmulatorStore, emulator_clock: Any
) -> None:
    """The server allows half what the job budgets: the run names the server's limit."""
    result = _run(tmp_path, emulator_store, emulator_clock, "2026-11-20", limit=FAST // 2)
    assert result.status == "ok", result.summary()
    notes = _learned(result)
    page = (result.report or Path()).read_text()
    # extract, load and verify: each chart counted second by second, not an average
    assert page.count("counted each second") >= 3
    extract = json.loads((result.report or Path()).with_suffix(".json").read_text())["extract"]
    assert extract["count_at_start"] == extract["logs"] and extract["arrived"] == 0
    assert any(f"server's limit is {FAST // 2:,} requests per 300 s" in n for n in notes), notes
    assert not any("held no logs" in n for n in notes)
