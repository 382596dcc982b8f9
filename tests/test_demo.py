"""`aigw-feedback demo`: the nightly job end to end against the emulator, leaving nothing running."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from pipeline.demo import demo
from pipeline.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_fast_demo_verifies_every_planned_change_and_stops_the_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo runs jobs/nightly.toml for real: all changes verified, report written, no threads."""
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "my-real-token-must-not-be-used")
    lines: list[str] = []
    before = {t.name for t in threading.enumerate()}
    result = asyncio.run(demo(root=ROOT, data_dir=tmp_path / "demo", fast=True, echo=lines.append))
    assert result.exit_code == 0, result.summary()
    run = result.run
    assert run.status == "ok" and run.mode == "nightly"
    planned = run.stages.plan.patch
    assert planned > 50
    assert run.stages.verify.verified == planned
    assert result.emulator["patches"]["distinct_logs"] == planned
    assert result.emulator["rate_limited"] == 0
    assert run.stages.label.csv["files"] == 2
    assert run.report is not None and run.report.exists()
    assert run.report.is_relative_to(tmp_path / "demo")
    # The judge's GETs, like every stage's requests, are charted second by second.
    assert sum(n for _, n in run.stages.label.timeline) == run.stages.label.requests > 0
    assert any("--fast" in line for line in lines)  # a raised limit is never silent
    summary = result.summary()
    assert "report.html" in summary and "my-real-token" not in summary
    assert {t.name for t in threading.enumerate()} <= before  # nothing left running


def test_demo_refuses_to_wipe_a_folder_that_is_not_a_demo_dir(tmp_path: Path) -> None:
    """--data-dir pointing at someone's files is refused, not wiped."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    with pytest.raises(UsageError, match="does not look like a demo data dir"):
        asyncio.run(demo(root=ROOT, data_dir=precious, fast=True, echo=lambda _: None))
    assert (precious / "thesis.txt").exists()


def test_demo_outside_the_checkout_says_where_to_run_it(tmp_path: Path) -> None:
    """Run from elsewhere, the demo says it needs the repository's jobs/ and sample_data/."""
    with pytest.raises(UsageError, match="repository"):
        asyncio.run(demo(root=tmp_path, data_dir=tmp_path / "d", echo=lambda _: None))
