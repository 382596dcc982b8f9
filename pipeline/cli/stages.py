"""One stage at a time: extract, label, plan, load, verify (each `pipeline.stage.run_stage`), report
and sample. The library decides what a stage needs (a new run or a recorded one, the lock, a client,
the report after verify) and its exit code."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from pipeline.cli.options import (
    echo_result,
    job_options,
    job_with_overrides,
    output_options,
    pop_output,
    remember_run,
    setup_output,
    stage_options,
)

if TYPE_CHECKING:
    from pipeline.stage import Stage


def _run_stage(
    ctx: click.Context,
    stage: Stage,
    job_file: str,
    options: dict[str, Any],
    *,
    run_id: str | None,
    window: str | None = None,
) -> None:
    """parse -> the job -> run_stage -> print -> exit with the stage's exit code."""
    import asyncio

    from pipeline.stage import run_stage

    progress = setup_output(ctx, **pop_output(options))
    job = job_with_overrides(job_file, **options)
    outcome = asyncio.run(
        run_stage(
            job,
            stage,
            run_id=run_id,
            window=window,
            progress=progress,
            on_run=remember_run(ctx),
        )
    )
    echo_result(ctx, outcome)
    sys.exit(outcome.exit_code)


@click.command("extract")
@click.argument("job_file", metavar="JOB", type=click.Path(dir_okay=False))
@click.option(
    "--window",
    "window_spec",
    metavar="SPEC",
    help="yesterday, today, last:24h, 2026-11-01, 2026-11-01..2026-11-07 (both days included), "
    "or 2026-11-01T00:00Z..2026-11-02T12:00Z (end excluded). All UTC. Default: the job's "
    "[window] default (yesterday, at least [window] lag old).",
)
@click.option(
    "--run",
    "run_id",
    metavar="RUN_ID",
    help="Extract a recorded run's window and record the result in its folder.",
)
@job_options
@output_options
@click.pass_context
def extract_command(
    ctx: click.Context,
    /,
    job_file: str,
    window_spec: str | None,
    run_id: str | None,
    **options: Any,
) -> None:
    """Extract every log of a window into Parquet, one partition folder per UTC day, as a run.

    Without --run it starts a new run for the window (like `run`, it has an id and a folder) and
    prints its id and the next stage command; --run extracts a recorded run's window again.
    Writes <data_dir>/logs/gateway=<id>/date=YYYY-MM-DD/*.parquet. Re-extracting a window replaces
    its days; rows of a partly covered day outside the window are kept. Pages on created_at and
    checks the API's counts, so each log comes out once even while logs arrive or are deleted;
    if they kept changing to the end, the summary says so and the exit code is 1. About one
    request per 50 logs, paced within the token's budget. Holds the job's run lock (exit 4 while
    another run of the job is going).

    \b
    Examples:
      aigw-feedback extract jobs/nightly.toml --window yesterday
      aigw-feedback extract jobs/nightly.toml --window 2026-11-01..2026-11-07
      aigw-feedback extract jobs/nightly.toml --run 20261102T011500Z-nightly-3f2a
      aigw-feedback extract jobs/nightly.toml --window last:6h --max-duration 10m --quiet
    """
    _run_stage(ctx, "extract", job_file, options, run_id=run_id, window=window_spec)


@click.command("label")
@stage_options
def label_command(ctx: click.Context, /, job_file: str, run_id: str, **options: Any) -> None:
    """Label a run's logs: analysts' CSV inbox, rules, external labeler; choose by precedence.

    Reads the run window's extracted logs and writes labels.parquet (one row per log and source),
    chosen.parquet (one label per log, by [load] precedence) and label_analysis.json (coverage,
    overlaps, conflicts, agreement; CSV accounting per file). CSV files in the inbox are applied
    once and moved to processed/<run>/; re-running the same run reads them again. Talks to the
    API only when the external labeler fetches response heads.

    \b
    Example:
      aigw-feedback label jobs/nightly.toml --run 20261102T011500Z-nightly-3f2a
    """
    _run_stage(ctx, "label", job_file, options, run_id=run_id)


@click.command("plan")
@stage_options
def plan_command(ctx: click.Context, /, job_file: str, run_id: str, **options: Any) -> None:
    """Work out the exact PATCHes for a run's labels, and what they will cost.

    Writes plan.parquet in the run folder and prints the counts (patch, unchanged, kept, not
    found), the requests needed and the time they take at the job's budget. Sends no PATCH.

    \b
    Example:
      aigw-feedback plan jobs/nightly.toml --run 20261102T011500Z-nightly-3f2a
    """
    _run_stage(ctx, "plan", job_file, options, run_id=run_id)


@click.command("load")
@stage_options
def load_command(ctx: click.Context, /, job_file: str, run_id: str, **options: Any) -> None:
    """Send a run's planned PATCHes within the budget; resumable.

    Every PATCH is journaled in state.sqlite: the same command again continues where a crash or a
    cap stopped it and never re-sends a change that was acknowledged. Exit code 0 when every
    planned change is applied, 1 when some failed or are still pending, 3 when the token lacks
    AI Gateway Edit.

    \b
    Examples:
      aigw-feedback load jobs/nightly.toml --run 20261102T011500Z-nightly-3f2a
      aigw-feedback load jobs/backfill.toml --run 20261102T011500Z-backfill-9c1d --max-duration 2h
    """
    _run_stage(ctx, "load", job_file, options, run_id=run_id)


@click.command("verify")
@stage_options
def verify_command(ctx: click.Context, /, job_file: str, run_id: str, **options: Any) -> None:
    """Read back every change a run's load applied and compare it with what was sent.

    Reads in batches of 50 (one list request each), re-checks mismatches after the job's
    [verify] recheck_wait, and writes verify.parquet and the run's report.{json,md,html}. Exit
    code 0 when everything is verified, 1 when something is mismatched or cannot be verified.

    \b
    Example:
      aigw-feedback verify jobs/nightly.toml --run 20261102T011500Z-nightly-3f2a
    """
    _run_stage(ctx, "verify", job_file, options, run_id=run_id)


@click.command("report")
@click.argument("run_id")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["md", "json", "html"]),
    default="md",
    show_default=True,
    help="What to show. md and json are printed; for html the path of the run's report.html is "
    "printed (with --out - the HTML itself).",
)
@click.option(
    "--out",
    metavar="DIR|-",
    help="Write report.json, report.md and report.html into DIR (created if needed) and print "
    "their paths; `-` prints the chosen format to stdout instead, HTML included.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default="data",
    show_default=True,
    help="The job's data dir.",
)
def report_command(run_id: str, fmt: Any, out: str | None, data_dir: str) -> None:
    """Show a run's report, rendered again from its run folder.

    A pure re-render: it reads only the run folder and writes nothing there (it works on a
    read-only data dir); use --out DIR to write the three files elsewhere. The report of a run is
    written into its folder by the run itself.

    Exit code 0 when the run succeeded (every planned change applied and verified, or nothing to
    do), 1 otherwise (the report says why); 2 for an unknown run id.

    \b
    Examples:
      aigw-feedback report 20261102T011500Z-nightly-3f2a
      aigw-feedback report 20261102T011500Z-nightly-3f2a --format json --data-dir demo-data
      aigw-feedback report 20261102T011500Z-nightly-3f2a --format html --out -  > report.html
      aigw-feedback report 20261102T011500Z-nightly-3f2a --out /tmp/report
    """
    from pathlib import Path

    from pipeline.stage import show_report

    folder = Path(out) if out not in (None, "-") else None
    shown = show_report(run_id, Path(data_dir), fmt=fmt, out=folder, inline=out == "-")
    click.echo(shown.text, nl=False)
    sys.exit(shown.exit_code)


@click.command("sample")
@click.argument("job_file", metavar="JOB", type=click.Path(dir_okay=False))
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="How many logs.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    required=True,
    help="The sheet to write: review.xlsx or review.csv.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "xlsx"]),
    help="csv or xlsx. Default: from the --out name's suffix.",
)
@click.option("--where", metavar="SQL", help="Only logs matching this SQL condition.")
@click.option("--stratify-by", metavar="COL", help="Spread evenly over a column or metadata.<key>.")
@click.option("--window", metavar="SPEC", help="Only these days (default: all extracted logs).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same sample.")
@click.option(
    "--no-text",
    is_flag=True,
    help="Leave out the request and response text: no API requests (and no token) needed.",
)
@click.option(
    "--text-chars",
    type=click.IntRange(min=100),
    default=1000,
    show_default=True,
    help="Cut each request and response text to this many characters.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print how many logs and requests it would take, and how long; send and write nothing.",
)
@job_options
def sample_command(
    job_file: str,
    n: int,
    out: str,
    fmt: str | None,
    where: str | None,
    stratify_by: str | None,
    window: str | None,
    seed: int,
    no_text: bool,
    text_chars: int,
    dry_run: bool,
    **options: Any,
) -> None:
    """Export extracted logs for analysts to judge, as a sheet the inbox reads back as it is.

    Each row has the log id, the prompt (the request's last user turn) and the answer (the
    response's assistant text), empty feedback, score and reason columns, then context: time,
    provider, model, status, tokens, cost, metadata, current feedback and score. The text costs one
    GET per log, paced by the job's request budget: the command prints how many requests and how
    long before it sends the first (--dry-run stops there; --no-text sends none).

    An .xlsx has a dropdown for feedback (👍 👎 1 -1), accepts only 0-100 in score, keeps the
    header in view and wraps the text. In a CSV write feedback as 1/-1, up/down, good/bad or
    👍/👎 and score as 0-100. Drop the filled file into the job's inbox; rows left empty are
    counted as unlabeled. Cells that would be formulas (=, +, -, @) start with an apostrophe.

    \b
    Examples:
      aigw-feedback sample jobs/nightly.toml --n 200 --out review.xlsx
      aigw-feedback sample jobs/nightly.toml --n 200 --out review.xlsx --dry-run
      aigw-feedback sample jobs/nightly.toml --n 500 --out review.csv --no-text
      aigw-feedback sample jobs/nightly.toml --n 100 --out review.xlsx \\
          --where "status_code = 200 AND provider = 'openai'" --stratify-by metadata.app \\
          --window 2026-11-01..2026-11-07 --seed 7
    """
    from pathlib import Path

    from pipeline.sample import sample

    job = job_with_overrides(job_file, **options)
    result = sample(
        job,
        n=n,
        out=Path(out),
        where=where,
        stratify_by=stratify_by,
        window=window,
        seed=seed,
        fmt=fmt,
        text=not no_text,
        dry_run=dry_run,
        text_chars=text_chars,
        on_plan=None if dry_run else lambda plan: click.echo(plan.summary() + " ...", err=True),
    )
    click.echo(result.summary())
    sys.exit(result.exit_code)


COMMANDS = [
    extract_command,
    label_command,
    plan_command,
    load_command,
    verify_command,
    report_command,
    sample_command,
]
