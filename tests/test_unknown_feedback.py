"""A list that does not show feedback means "unknown", never "none"; look-ups cost what was said.

Cloudflare's list schema does not promise ``feedback`` or ``score`` in an entry (reference, "Log
entry"). Against such a server (the emulator's ``list_feedback`` off) the job must not overwrite a
human's label it could not see, must verify what it wrote by reading it back some other way, and its
dry run must spend no more requests than it reports.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from pipeline.emulator.app import create_app
from pipeline.emulator.settings import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_EDIT_TOKEN,
    DEFAULT_GATEWAY_ID,
    EmulatorSettings,
)
from pipeline.emulator.store import EmulatorStore
from pipeline.run import run_job
from pipeline.run_result import RunResult
from pipeline.window import parse_window
from tests.runkit import D0, DAY, FAST, drop_csv, load, write_job

WINDOW = "2026-11-20"


def _run(
    tmp_path: Path, store: EmulatorStore, clock: Any, *, list_feedback: bool = True, **kw: Any
) -> tuple[RunResult, Any]:
    settings = EmulatorSettings.of(rate_limit_requests=FAST, list_feedback=list_feedback)
    app = create_app(settings, store, clock, sleep=clock.sleep)
    path = write_job(tmp_path, "http://emulator.test/client/v4", gateway_id=DEFAULT_GATEWAY_ID)
    job = load(path, DEFAULT_EDIT_TOKEN)
    for name, rows in kw.pop("csv", {}).items():
        drop_csv(job, name, rows)
    result = asyncio.run(
        run_job(
            job,
            window=parse_window(WINDOW, now=D0 + 30 * DAY),
            transport=httpx.ASGITransport(app=app),
            clock=clock,
            sleep=clock.sleep,
            **kw,
        )
    )
    return result, app


def _answered_logs(logs: list[dict[str, Any]]) -> list[str]:
    """Unlabeled logs of the window that the job's "answered" rule gives a score."""
    day = datetime.fromisoformat("2026-11-20T00:00:00+00:00")
    return [
        str(e["id"])
        for e in logs
        if e.get("success")
        and e.get("score") is None
        and e.get("feedback") is None
        and day <= datetime.fromisoformat(str(e["created_at"]).replace("Z", "+00:00")) < day + DAY
    ]


def test_a_human_label_the_list_did_not_show_is_not_overwritten_by_a_rule(
    tmp_path: Path, emulator_store: EmulatorStore, emulator_clock: Any, emulator_logs: Any
) -> None:
    """A log a person scored 42 and marked +1, listed without those fields: the rule's score is
    not sent over it."""
    target = _answered_logs(emulator_logs)[0]
    gw = emulator_store.gateway_key(DEFAULT_ACCOUNT_ID, DEFAULT_GATEWAY_ID)
    assert gw is not None
    emulator_store.gw_patch(gw, target, {"feedback": 1, "score": 42})

    result, _ = _run(tmp_path, emulator_store, emulator_clock, list_feedback=False)

    after = emulator_store.get(DEFAULT_ACCOUNT_ID, DEFAULT_GATEWAY_ID, target)
    assert after is not None
    assert (after["feedback"], after["score"]) == (1, 42)
    assert result.stages.plan is not None
    assert result.stages.plan.keep_existing >= 1, result.stages.plan.summary()


def test_what_was_written_is_verified_when_the_list_hides_feedback(
    tmp_path: Path, emulator_store: EmulatorStore, emulator_clock: Any
) -> None:
    """Verify reads back by another route: every PATCH verified, none 'unverifiable'."""
    result, _ = _run(tmp_path, emulator_store, emulator_clock, list_feedback=False)

    assert result.stages.verify is not None and result.stages.load is not None
    assert result.stages.load.patched > 0
    assert result.stages.verify.unverifiable == 0, result.stages.verify.summary()
    assert result.stages.verify.verified == result.stages.load.patched
    report = json.loads((result.report or Path()).with_suffix(".json").read_text())
    assert result.status == "ok", report["problems"]


def test_a_dry_run_spends_no_more_than_it_reports_on_ids_that_do_not_exist(
    tmp_path: Path, emulator_store: EmulatorStore, emulator_clock: Any
) -> None:
    """5,000 CSV ids unknown to the gateway: one list request per 50, not one GET each; the
    plan's own count of requests spent matches what the server saw."""
    ghosts = {f"01J{n:023d}": 1 for n in range(5_000)}
    result, app = _run(
        tmp_path, emulator_store, emulator_clock, csv={"ghosts.csv": ghosts}, dry_run=True
    )
    plan = result.stages.plan
    assert plan is not None
    assert plan.not_found == 5_000
    served = sum(app.state.control.stats.requests.values())
    assert result.stages.extract is not None
    assert plan.lookup_requests <= 5_000 // 50 + 10, plan.summary()
    assert served == result.stages.extract.requests + plan.lookup_requests
    assert f"{plan.lookup_requests} requests spent on look-ups" in plan.summary()
