"""A gateway whose logs carry every id format Cloudflare has issued: each label lands and verifies.

ULIDs (before 2026-10-08), UUIDv7 (since) and 64-hex ids side by side, and an analyst's CSV that
spells them in the other case (lower-case ULIDs, upper-case UUIDs and hex): the ids are the same logs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from pipeline.emulator import generate_logs
from pipeline.emulator.app import create_app
from pipeline.emulator.settings import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_EDIT_TOKEN,
    DEFAULT_GATEWAY_ID,
    EmulatorSettings,
)
from pipeline.emulator.store import EmulatorStore
from pipeline.run import run_job
from pipeline.window import parse_window
from tests.runkit import D0, DAY, FAST, drop_csv, load, write_job

START, END = "2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z"


def _swapped(log_id: str) -> str:
    """The spelling an analyst might type: ULIDs lower case, the others upper case."""
    return log_id.lower() if len(log_id) == 26 else log_id.upper()


def test_a_run_over_ulid_uuid7_and_hex_ids_applies_and_verifies_every_label(
    tmp_path: Path, emulator_clock: Any
) -> None:
    """90 logs in three id formats, a CSV label for each in the other case: 90 patched, 90 verified."""
    logs = [
        *generate_logs(30, seed=1, start=START, end=END, ids="ulid"),
        *generate_logs(30, seed=2, start=START, end=END, ids="uuid7"),
        *generate_logs(30, seed=3, start=START, end=END, ids="hex64"),
    ]
    for entry in logs:
        entry["feedback"], entry["score"] = None, None
    ids = [str(e["id"]) for e in logs]
    assert {len(i) for i in ids} == {26, 36, 64}

    with EmulatorStore() as store:
        store.insert_logs(DEFAULT_ACCOUNT_ID, DEFAULT_GATEWAY_ID, logs)
        app = create_app(
            EmulatorSettings.of(rate_limit_requests=FAST), store, emulator_clock,
            sleep=emulator_clock.sleep,
        )  # fmt: skip
        path = write_job(tmp_path, "http://emulator.test/client/v4", gateway_id=DEFAULT_GATEWAY_ID)
        job = load(path, DEFAULT_EDIT_TOKEN)
        drop_csv(job, "mixed.csv", {_swapped(i): (1 if n % 2 else -1) for n, i in enumerate(ids)})
        result = asyncio.run(
            run_job(
                job,
                window=parse_window("2026-11-20", now=D0 + 30 * DAY),
                transport=httpx.ASGITransport(app=app),
                clock=emulator_clock,
                sleep=emulator_clock.sleep,
            )
        )
        stored = {i: store.get(DEFAULT_ACCOUNT_ID, DEFAULT_GATEWAY_ID, i) for i in ids}

    assert result.status == "ok", result.summary()
    assert result.stages.plan is not None and result.stages.verify is not None
    assert result.stages.plan.not_found == 0
    assert result.stages.verify.verified == len(ids)
    for n, log_id in enumerate(ids):
        entry = stored[log_id]
        assert entry is not None and entry["feedback"] == (1 if n % 2 else -1), log_id
