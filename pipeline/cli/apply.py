"""apply: analysts' labels onto logs of any age, now (no window, no extract)."""

from __future__ import annotations

import sys
from typing import Any

import click

from pipeline.cli.options import (
    echo_result,
    job_options,
    job_with_overrides,
    output_options,
    pop_output,
    setup_output,
)


@click.command("apply")
@click.argument("job_file", metavar="JOB", type=click.Path(dir_okay=False))
@click.argument("files", metavar="[FILE]...", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "--dry-run", is_flag=True, help="Stop after the plan: counts, requests, time; write nothing."
)
@job_options
@output_options
@click.pass_context
def apply_command(
    ctx: click.Context, /, job_file: str, files: tuple[str, ...], dry_run: bool, **options: Any
) -> None:
    """Put analysts' labels onto their logs now, whatever the logs' age.

    Takes the CSV or .xlsx FILEs named (copied into the job's inbox; the originals stay), or
    else what is in the inbox, and looks the logs up by id (one request per 50 ids) instead of
    extracting a window; then plan, load, verify and report as in `run`, with the job's lock,
    journal and budget. Only the CSV labeler runs. With an empty inbox it sends no request and
    exits 0, so it can run whenever a file lands (see jobs/schedule/). Exit codes as for `run`.

    \b
    Examples:
      aigw-feedback apply jobs/nightly.toml
      aigw-feedback apply jobs/nightly.toml review-filled.xlsx
      aigw-feedback apply jobs/nightly.toml old-logs.csv --dry-run
    """
    import asyncio
    from pathlib import Path

    from pipeline.apply import apply_labels

    output = pop_output(options)
    progress = setup_output(ctx, **output)
    job = job_with_overrides(job_file, **options)
    result = asyncio.run(
        apply_labels(job, [Path(f) for f in files], dry_run=dry_run, progress=progress)
    )
    echo_result(ctx, result)
    sys.exit(result.exit_code)


COMMANDS = (apply_command,)
