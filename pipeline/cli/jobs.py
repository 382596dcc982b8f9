"""Whole jobs: run (every stage of a run, as one), backfill (a range of days), runs (the history)
and demo (the nightly job against a local emulator)."""

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

dry_run_option = click.option(
    "--dry-run", is_flag=True, help="Stop after the plan: counts, requests, time; write nothing."
)


@click.command("run")
@click.argument("job_file", metavar="JOB", type=click.Path(dir_okay=False))
@click.option(
    "--window",
    "window_spec",
    metavar="SPEC",
    help="yesterday, today, last:24h, 2026-11-01, 2026-11-01..2026-11-07, or an ISO range. "
    "Default: from the job's watermark to the end of yesterday (missed nights caught up).",
)
@click.option(
    "--run", "run_id", metavar="RUN_ID", help="Resume a recorded run (see `aigw-feedback runs`)."
)
@dry_run_option
@job_options
@output_options
@click.pass_context
def run_command(
    ctx: click.Context,
    /,
    job_file: str,
    window_spec: str | None,
    run_id: str | None,
    dry_run: bool,
    **options: Any,
) -> None:
    """Run a job: extract, label, plan, load, verify and report, as one run with an id.

    Without --window, a nightly job takes everything from where its last verified run ended up
    to the end of yesterday (UTC), so nights that were missed are caught up. --run resumes a
    crashed or capped run where it stopped; nothing acknowledged is ever sent twice.

    Exit codes: 0 every planned change applied and verified; 1 some failed, are unverified, or
    a cap stopped the run (run it again); 2 usage or job file error; 3 the token was refused;
    4 another run of this job holds the lock.

    \b
    Examples:
      aigw-feedback run jobs/nightly.toml
      aigw-feedback run jobs/nightly.toml --dry-run
      aigw-feedback run jobs/nightly.toml --window 2026-11-01..2026-11-07
      aigw-feedback run jobs/nightly.toml --run 20261102T011500Z-nightly-3f2a
      aigw-feedback run jobs/nightly.toml --quiet --log-format json --max-duration 2h
    """
    import asyncio
    from datetime import UTC, datetime

    from pipeline.run import run_job
    from pipeline.window import parse_window

    output = pop_output(options)
    progress = setup_output(ctx, **output)
    job = job_with_overrides(job_file, **options)
    now = datetime.now(UTC)
    window = None
    if window_spec is not None:
        window = parse_window(window_spec, now=now, lag_seconds=job.window.lag_seconds)
    result = asyncio.run(
        run_job(job, window=window, run_id=run_id, dry_run=dry_run, now=now, progress=progress)
    )
    echo_result(ctx, result)
    sys.exit(result.exit_code)


def _date(_ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    from datetime import date

    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2026-11-01") from None


@click.command("backfill")
@click.argument("job_file", metavar="JOB", type=click.Path(dir_okay=False))
@click.option(
    "--from", "start", metavar="DATE", required=True, callback=_date, help="First UTC day."
)
@click.option(
    "--to", "end", metavar="DATE", required=True, callback=_date, help="Last UTC day (included)."
)
@dry_run_option
@job_options
@output_options
@click.pass_context
def backfill_command(
    ctx: click.Context,
    /,
    job_file: str,
    start: Any,
    end: Any,
    dry_run: bool,
    **options: Any,
) -> None:
    """Label a range of past days, one resumable run per UTC day, in order.

    --max-requests caps the whole invocation (all its days), so a long backfill spreads over
    several nights within the token's budget: run the same command again and it skips the days
    already verified and resumes the day it stopped in. A backfill never moves the nightly
    job's watermark. Exit code 0 when every day is verified, 1 when some are not (yet).

    \b
    Examples:
      aigw-feedback backfill jobs/backfill.toml --from 2026-10-01 --to 2026-10-30
      aigw-feedback backfill jobs/backfill.toml --from 2026-08-01 --to 2026-10-31 --max-requests 3000
      aigw-feedback backfill jobs/backfill.toml --from 2026-10-01 --to 2026-10-07 --dry-run
    """
    import asyncio

    from pipeline.backfill import backfill

    output = pop_output(options)
    progress = setup_output(ctx, **output)
    max_requests = options.pop("max_requests", None)
    job = job_with_overrides(job_file, **options)
    result = asyncio.run(
        backfill(
            job,
            start=start,
            end=end,
            max_requests=max_requests,
            dry_run=dry_run,
            progress=progress,
        )
    )
    echo_result(ctx, result)
    sys.exit(result.exit_code)


@click.command("runs")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default="data",
    show_default=True,
    help="The jobs' data dir.",
)
@click.option("--job", "job_name", metavar="NAME", help="Only this job's runs.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="The newest N runs  [default: 20; with --html every run].",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
@click.option(
    "--html", "as_html", is_flag=True, help="Write one HTML page over the runs (charts, links)."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="With --html: the page's file  [default: DATA_DIR/runs.html].",
)
def runs_command(
    data_dir: str,
    job_name: str | None,
    limit: int | None,
    as_json: bool,
    as_html: bool,
    out: str | None,
) -> None:
    """Recent runs, newest first: id, job, window, status, counts, duration; and the watermarks.

    With --html, one self-contained page over every run of the data dir: a chart per measure
    night by night (labels, patched, verified, failed, requests), each run's status, and a link
    to its report.html (relative, so the data dir can be moved or served as it is).

    \b
    Examples:
      aigw-feedback runs
      aigw-feedback runs --data-dir demo-data --job nightly
      aigw-feedback runs --json --limit 5
      aigw-feedback runs --html --out /srv/www/aigw/runs.html
    """
    import json
    from pathlib import Path

    from pipeline.runs import list_runs_report, runs_page

    if as_html:
        page = runs_page(Path(data_dir), out=Path(out) if out else None, job=job_name, limit=limit)
        click.echo(page.summary())
        sys.exit(page.exit_code)
    listing = list_runs_report(Path(data_dir), job=job_name, limit=limit or 20)
    if as_json:
        for run in listing.to_json():
            click.echo(json.dumps(run))
    else:
        click.echo(listing.summary())
    sys.exit(listing.exit_code)


@click.command("demo")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default="demo-data",
    show_default=True,
    help="Wiped and recreated for the demo.",
)
@click.option(
    "--fast",
    is_flag=True,
    help="Raise the emulator's rate limit and the job's budget 100x: seconds, not minutes "
    "(not Cloudflare's pace; the output says so).",
)
@click.option("--quiet", "-q", is_flag=True, help="Only errors and the final summary.")
@click.option("--verbose", "-v", is_flag=True, help="Debug logging, tracebacks for errors.")
@click.pass_context
def demo_command(
    ctx: click.Context, /, data_dir: str, fast: bool, quiet: bool, verbose: bool
) -> None:
    """The nightly job end to end against a local emulator and the sample data (make demo).

    Starts the emulator on a free loopback port with the sample logs (newest day: yesterday)
    and Cloudflare's rate limit, copies the analysts' sample CSV files into a fresh inbox in
    the demo data dir, runs jobs/nightly.toml against it with the emulator's demo token, prints
    the summary and the path of report.html, and stops the emulator. Takes 1-2 minutes.
    Run it from the repository root.

    \b
    Examples:
      aigw-feedback demo
      aigw-feedback demo --fast --data-dir /tmp/aigw-demo
    """
    from pathlib import Path

    from pipeline.demo import run_demo

    progress = setup_output(ctx, quiet=quiet, verbose=verbose)
    result = run_demo(
        data_dir=Path(data_dir).absolute(), progress=progress, echo=click.echo, fast=fast
    )
    click.echo(result.summary())
    sys.exit(result.exit_code)


@click.command("check")
@click.argument("job_file", metavar="JOB", type=click.Path(dir_okay=False))
@click.option(
    "--write-probe",
    is_flag=True,
    help="Prove AI Gateway Edit with one PATCH that rewrites the newest log's feedback to the "
    "value it already has.",
)
@job_options
@output_options
@click.pass_context
def check_command(ctx: click.Context, /, job_file: str, write_probe: bool, **options: Any) -> None:
    """Preflight a job: token, gateway, bucket, volume, nightly cost. Writes nothing.

    Spends two requests (three with --write-probe): says whether the token is accepted and the
    gateway exists, the bucket's quota and what remains (and whether someone else uses it), how
    many logs the gateway holds and how old the newest is (days old: probably Cloudflare's new
    logging, or logging off), and what a nightly run costs at the last day's volume. Exit codes
    as for run: 0 fine, 1 something needs a look, 2 no such gateway, 3 token refused.

    \b
    Examples:
      aigw-feedback check jobs/nightly.toml
      aigw-feedback check jobs/nightly.toml --write-probe
      aigw-feedback check jobs/nightly.toml --log-format json
    """
    import asyncio

    from pipeline.check import check

    setup_output(ctx, **pop_output(options))
    job = job_with_overrides(job_file, **options)
    result = asyncio.run(check(job, write_probe=write_probe))
    echo_result(ctx, result)
    sys.exit(result.exit_code)


COMMANDS = [run_command, backfill_command, runs_command, check_command, demo_command]
