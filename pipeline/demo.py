"""`aigw-feedback demo` (what `make demo` runs): the real nightly job against a local emulator.

1. Starts the emulator on a free loopback port, seeded with the bundled sample logs moved so that
   their newest day is yesterday, with Cloudflare's rate limit (1200 requests per 5 minutes).
2. Makes a fresh demo data dir (``./demo-data``, wiped first) and copies the sample analysts' CSV
   files into its inbox.
3. Loads ``jobs/nightly.toml`` with the emulator's demo token in the environment mapping (the job's
   ``token_env``, never a command-line argument) and runs it with ``--base-url`` and ``--data-dir``
   overrides: the same `run_job` code path as a real nightly run. Only the inbox (and the budget's
   shared-state file) are moved into the demo data dir, so the demo never touches ./labels or ~/.cache.
4. Prints the run's summary and the path of ``report.html``; stops the emulator. Nothing keeps running.

It needs the checkout's ``jobs/`` and ``sample_data/``: run it from the repository root.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from pipeline.config import JobConfig, load_job
from pipeline.emulator import DEFAULT_ACCOUNT_ID, EmulatorSettings, load_sample, running_emulator
from pipeline.errors import UsageError
from pipeline.progress import Progress
from pipeline.run import run_job
from pipeline.run_result import RunResult

JOB_FILE = Path("jobs/nightly.toml")
SAMPLE_LABELS = Path("sample_data/labels")
DEFAULT_DEMO_DIR = Path("demo-data")
FAST_FACTOR = 100  # --fast: the emulator's limit and the job's budget, both raised this much


@dataclass(frozen=True)
class DemoResult:
    run: RunResult
    data_dir: Path
    emulator: dict[str, Any]  # the emulator's own count of what it received
    seconds: float

    @property
    def exit_code(self) -> int:
        return self.run.exit_code

    def summary(self) -> str:
        patches = self.emulator.get("patches") or {}
        lines = [
            self.run.summary(),
            "",
            f"The emulator received {self.emulator.get('total_requests', 0):,} requests "
            f"({self.emulator.get('rate_limited', 0)} rate-limited), "
            f"{patches.get('total', 0):,} PATCHes to {patches.get('distinct_logs', 0):,} logs.",
            f"Demo finished in {self.seconds:.0f} s; nothing is left running. Its data dir: "
            f"{self.data_dir}",
        ]
        if self.run.report is not None:
            lines.append(f"Open the report: {self.run.report.resolve().as_uri()}")
        return "\n".join(lines)


def demo_job(job_file: Path, *, data_dir: Path, token: str, env: Mapping[str, str]) -> JobConfig:
    """The job file as a nightly run loads it, with the demo token in its token variable and the
    demo data dir. The account defaults to the emulator's; the caller sets the base URL."""
    env = {"CLOUDFLARE_ACCOUNT_ID": DEFAULT_ACCOUNT_ID, **env}
    token_env = load_job(job_file, env=env).gateway.token_env
    job = load_job(job_file, env={**env, token_env: token}).with_overrides(data_dir=data_dir)
    labels = dataclasses.replace(
        job.labels, csv=dataclasses.replace(job.labels.csv, inbox=data_dir / "labels" / "inbox")
    )
    budget = dataclasses.replace(job.budget, shared_state=data_dir / "budget.sqlite")
    return dataclasses.replace(job, labels=labels, budget=budget)


def prepare_data_dir(data_dir: Path, labels_from: Path) -> list[Path]:
    """Wipe and recreate the demo data dir; copy the sample CSV files into its inbox."""
    if data_dir.exists():
        if not (data_dir / "state.sqlite").exists() and any(data_dir.iterdir()):
            raise UsageError(
                f"{data_dir} exists and does not look like a demo data dir; "
                "pick another with --data-dir"
            )
        shutil.rmtree(data_dir)
    inbox = data_dir / "labels" / "inbox"
    inbox.mkdir(parents=True)
    copied = []
    for csv_file in sorted(labels_from.glob("*.csv")):
        copied.append(Path(shutil.copy2(csv_file, inbox / csv_file.name)))
    return copied


async def demo(
    *,
    root: Path | None = None,
    data_dir: Path | None = None,
    settings: EmulatorSettings | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
    echo: Callable[[str], None] = print,
    fast: bool = False,
) -> DemoResult:
    """Run the nightly job end to end against a freshly seeded emulator; see the module doc.

    ``fast`` raises the emulator's rate limit and the job's budget 100-fold (and says so): the same
    run in seconds instead of minutes, but not at Cloudflare's pace.
    """
    started = time.monotonic()
    root = Path.cwd() if root is None else root
    job_file, labels_from = root / JOB_FILE, root / SAMPLE_LABELS
    if not job_file.exists() or not labels_from.is_dir():
        raise UsageError(
            f"the demo needs {JOB_FILE} and {SAMPLE_LABELS}/ from the repository: run it from "
            f"the checkout's root (not {root})"
        )
    data_dir = root / DEFAULT_DEMO_DIR if data_dir is None else data_dir
    settings = settings or EmulatorSettings()
    if fast:
        settings = dataclasses.replace(
            settings, rate_limit_requests=settings.rate_limit_requests * FAST_FACTOR
        )
    token = settings.token_with_scope("edit")
    if token is None:
        raise UsageError("the emulator settings have no token with edit scope")
    now = now or datetime.now(UTC)
    copied = prepare_data_dir(data_dir, labels_from)
    logs = load_sample(shift_to_yesterday=True, now=now)
    days = sorted({str(entry["created_at"])[:10] for entry in logs})
    # The user's own account id and token (if set) are replaced, never sent to the emulator.
    env = {**os.environ, "CLOUDFLARE_ACCOUNT_ID": DEFAULT_ACCOUNT_ID}
    job = demo_job(job_file, data_dir=data_dir, token=token, env=env)
    if fast:
        job = dataclasses.replace(
            job,
            budget=dataclasses.replace(
                job.budget, requests_per_period=job.budget.requests_per_period * FAST_FACTOR
            ),
        )
    gateway = job.gateway
    with running_emulator(
        settings=settings, logs=logs, account_id=gateway.account_id, gateway_id=gateway.gateway_id
    ) as emu:
        job = job.with_overrides(base_url=emu.base_url)
        echo(f"aigw-feedback demo: {JOB_FILE} end to end against a local AI Gateway emulator")
        pace = "as on Cloudflare" if not fast else f"--fast: {FAST_FACTOR}x Cloudflare's"
        echo(
            f"  emulator  {emu.base_url}  (rate limit {settings.rate_limit_requests} requests / "
            f"{settings.rate_limit_window:g} s per token, {pace})"
        )
        echo(f"  logs      {len(logs):,} sample logs, {days[0]} .. {days[-1]} (newest: yesterday)")
        echo(f"  inbox     {job.labels.csv.inbox}: {', '.join(p.name for p in copied)}")
        echo(f"  token     the emulator's demo token, given to the job as ${job.gateway.token_env}")
        expect = "a few seconds" if fast else "about 1-2 minutes"
        echo(
            f"  budget    {job.budget.rate_per_second:.1f} requests/s for a few hundred requests: "
            f"{expect}"
        )
        echo("")
        result = await run_job(job, now=now, progress=progress)
        async with httpx.AsyncClient() as http:
            stats = (await http.get(f"{emu.admin_url}/stats")).json()
    return DemoResult(result, data_dir, stats, time.monotonic() - started)


def run_demo(**kwargs: Any) -> DemoResult:
    """Synchronous wrapper for the CLI."""
    return asyncio.run(demo(**kwargs))
