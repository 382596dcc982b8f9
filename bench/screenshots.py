"""`make screenshots`: the report and the runs page as a person sees them, at 1400 and 390 px.

Builds a data dir with a week of runs against the bundled emulator (the demo's sample logs and
analysts' CSV files, the demo's --fast budget): the newest night with the inbox, like the demo,
then the six nights before it, one of them with a read-only token so the history shows a failed
run. Then writes the runs page and screenshots, with headless Chromium, the newest run's
report.html, the failed run's and the runs page, each at both widths, into ``screenshots/``
(gitignored). Takes about half a minute; nothing keeps running.

    .venv/bin/python bench/screenshots.py [--out screenshots] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.demo import FAST_FACTOR, JOB_FILE, SAMPLE_LABELS, demo_job, prepare_data_dir
from pipeline.emulator import DEFAULT_ACCOUNT_ID, EmulatorSettings, load_sample, running_emulator
from pipeline.errors import PipelineError
from pipeline.run import run_job
from pipeline.runs import runs_page
from pipeline.window import Window

WIDTHS = (1400, 390)
HEIGHT = 2400
NIGHTS = 7
FAILED_NIGHT = 3  # nights before the newest: the run with a read-only token


async def build(data_dir: Path) -> list[tuple[str, Path]]:
    """A week of runs in ``data_dir``; the report files to screenshot, named."""
    root = Path.cwd()
    prepare_data_dir(data_dir, root / SAMPLE_LABELS)
    now = datetime.now(UTC)
    logs = load_sample(shift_to_yesterday=True, now=now)
    settings = EmulatorSettings()
    settings = dataclasses.replace(
        settings, rate_limit_requests=settings.rate_limit_requests * FAST_FACTOR
    )
    env = {**os.environ, "CLOUDFLARE_ACCOUNT_ID": DEFAULT_ACCOUNT_ID}
    tokens = {scope: settings.token_with_scope(scope) for scope in ("edit", "read")}
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    shots: list[tuple[str, Path]] = []
    with running_emulator(settings=settings, logs=logs, account_id=DEFAULT_ACCOUNT_ID) as emu:
        for back in range(1, NIGHTS + 1):
            scope = "read" if back == FAILED_NIGHT + 1 else "edit"
            job = demo_job(root / JOB_FILE, data_dir=data_dir, token=str(tokens[scope]), env=env)
            budget = dataclasses.replace(
                job.budget, requests_per_period=job.budget.requests_per_period * FAST_FACTOR
            )
            job = dataclasses.replace(job, budget=budget).with_overrides(base_url=emu.base_url)
            night = Window(today - timedelta(days=back), today - timedelta(days=back - 1))
            try:
                result = await run_job(job, window=night, now=now)
                print(result.summary().splitlines()[0], file=sys.stderr)
            except PipelineError as exc:  # the refused token: the run's report says so
                print(f"{night}: {exc}", file=sys.stderr)
            newest = max((data_dir / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
            if back == 1:
                shots.append(("report", newest / "report.html"))
            elif scope == "read":
                shots.append(("report-failed", newest / "report.html"))
    return shots


def screenshot(chromium: str, page: Path, png: Path, width: int) -> None:
    command = [chromium, "--headless", "--disable-gpu", "--hide-scrollbars",
               f"--screenshot={png}", f"--window-size={width},{HEIGHT}"]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--no-sandbox")  # Chromium refuses to run as root without it
    subprocess.run(
        [*command, page.resolve().as_uri()],
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    data_dir = args.out / "data"
    args.out.mkdir(parents=True, exist_ok=True)
    shots = asyncio.run(build(data_dir))
    shots.append(("runs", runs_page(data_dir).path))
    for name, page in shots:
        for width in WIDTHS:
            png = args.out / f"{name}-{width}.png"
            screenshot(args.chromium, page, png, width)
            print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
