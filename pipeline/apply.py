"""Apply now: analysts' labels onto logs of any age, without waiting for the night or a window.

``aigw-feedback apply JOB [FILE...]`` takes the CSV (and spreadsheet) files named, or else what is
in the job's inbox, and runs label → plan → load → verify → report on them like any run, with the
job's lock, journal and budget. There is no extract: the plan looks every labeled log up by id, a
list request per 50 ids (``gateway.lookup``), so a sheet of 1,000 old logs costs about 20 requests
before its PATCHes, whatever their age. Only the CSV labeler runs; rules and the external labeler
need a window of logs and stay with the nightly job.

Files named on the command line are copied into the inbox first (the originals stay where they
are), so they are accounted, kept in the run folder and resumed exactly like an analyst's drop. A dry
run copies nothing it leaves behind: it plans, prints the cost and removes its copies again.

It suits a trigger that fires when a file lands in the inbox (a systemd ``.path`` unit, or cron
every few minutes; ``jobs/schedule/``): with nothing in the inbox it ends ``nothing_to_do`` after
sending no request.
"""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import httpx

from pipeline.config import JobConfig
from pipeline.errors import UsageError
from pipeline.progress import Progress
from pipeline.run import job_runner
from pipeline.run_result import RunResult


async def apply_labels(
    job: JobConfig,
    files: Sequence[Path] = (),
    *,
    dry_run: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """One `aigw-feedback apply`: ``files`` (or the inbox) onto their logs, looked up by id."""
    if not job.labels.csv.enabled:
        raise UsageError(f"{job.path}: [labels.csv] enabled = false, so there is nothing to apply")
    csv_only = replace(
        job,
        labels=replace(job.labels, rules=(), external=replace(job.labels.external, enabled=False)),
    )
    copies = into_inbox(files, job.labels.csv.inbox)
    try:
        async with job_runner(
            csv_only, dry_run=dry_run, transport=transport, clock=clock, sleep=sleep,
            now=now or datetime.now(UTC), progress=progress,
        ) as runner:  # fmt: skip
            return await runner.apply()
    finally:
        if dry_run:
            for copy in copies:
                copy.unlink(missing_ok=True)


def into_inbox(files: Sequence[Path], inbox: Path) -> list[Path]:
    """Copy each file into the inbox under a name no other file there has; return the copies.

    A file that is missing or not a regular file is a usage error naming it (before anything is
    copied); one already in the inbox is left where it is.
    """
    for path in files:
        if not path.is_file():
            raise UsageError(f"{path}: no such file (apply takes CSV or .xlsx files of labels)")
    inbox.mkdir(parents=True, exist_ok=True)
    copies = []
    for path in files:
        if path.resolve().parent == inbox.resolve():
            continue
        target = inbox / path.name
        n = 1
        while target.exists():
            n += 1
            target = inbox / f"{path.stem}-{n}{path.suffix}"
        partial = target.with_name(f".{target.name}.copying")
        shutil.copyfile(path, partial)
        partial.replace(target)  # the inbox never shows half a file
        copies.append(target)
    return copies
