"""The `aigw-feedback` command. It does no work: parse, build config, call one library function, print.

Only here do exceptions become messages and exit codes:
0 ok, 1 some changes failed or are unverified, 2 usage/config, 3 auth/permission, 4 lock held.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from pipeline.cli_options import (
    ARGV,
    data_dir_option,
    emit_result,
    job_options,
    job_with_overrides,
    output_options,
    pop_output,
    report_failure,
    setup_output,
    wants_json,
)
from pipeline.errors import PipelineError


class _Group(click.Group):
    """Turns exceptions into one or two plain sentences on stderr and an exit code (or, with
    --log-format json, an error line and a failed summary: see cli_options.report_failure)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[ARGV] = list(args)  # so errors before --log-format is read still honour it
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        ctx.ensure_object(dict)  # shared with the commands: --verbose, --log-format, the run id
        try:
            return super().invoke(ctx)
        except PipelineError as exc:
            report_failure(ctx, message=str(exc), exit_code=exc.exit_code, kind=type(exc).__name__)
        except (click.exceptions.Exit, click.Abort):
            raise
        except click.ClickException as exc:
            if not wants_json(ctx):
                raise  # click prints its usage line and the message
            message = exc.format_message()
            report_failure(ctx, message=message, exit_code=exc.exit_code, kind="UsageError")
        except OSError as exc:
            if exc.filename is None:
                _unexpected(ctx, exc)
            # A file or folder the pipeline cannot use: name it; a permission or a path problem is
            # the operator's to fix (exit 2).
            usage = exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR,
                                  errno.EISDIR, errno.EEXIST)  # fmt: skip
            report_failure(
                ctx,
                message=f"cannot use {exc.filename}: {exc.strerror or exc}. Check the path and its "
                "permissions (for the data dir: --data-dir or the job's [store] data_dir).",
                exit_code=2 if usage else 1,
                kind="DataDirError" if usage else type(exc).__name__,
            )
        except Exception as exc:
            _unexpected(ctx, exc)


def _unexpected(ctx: click.Context, exc: Exception) -> NoReturn:
    """A bug, not a condition the pipeline knows: still one sentence unless --verbose."""
    verbose = bool((ctx.obj or {}).get("verbose"))
    hint = "" if verbose or wants_json(ctx) else " (run with --verbose for the traceback)"
    message = f"unexpected {type(exc).__name__}: {exc}{hint}"
    report_failure(ctx, message=message, exit_code=1, kind=type(exc).__name__)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aigw-feedback")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Put labels (human feedback) onto Cloudflare AI Gateway logs in bulk.

    \b
    Examples:
      aigw-feedback run jobs/nightly.toml
      aigw-feedback run jobs/nightly.toml --dry-run
      aigw-feedback emulator serve --generate 5000
      aigw-feedback demo
    """
    ctx.ensure_object(dict)


def main() -> None:
    cli(prog_name="aigw-feedback")


# Commands are registered below, one block per command.


# -- plan / load / verify / report ------------------------------------------------------------


def _stage_options(fn: Any) -> Any:
    """JOB --run RUN_ID, the shared job options and output options: every per-run stage command."""
    fn = click.pass_context(fn)
    fn = output_options(fn)
    fn = job_options(fn)
    fn = click.option(
        "--run",
        "run_id",
        required=True,
        metavar="RUN_ID",
        help="The run (see `aigw-feedback runs`).",
    )(fn)
    return click.argument("job_file", metavar="JOB", type=click.Path(dir_okay=False))(fn)


@contextmanager
def _stage(
    ctx: click.Context, job_file: str, run_id: str, options: dict[str, Any]
) -> Iterator[tuple[Any, Any, Any]]:
    """(job, run, progress) for a stage command: output set up, overrides applied, run opened,
    and the job's run lock held until the command ends (LockHeldError, exit 4, if another run or
    stage command of the job holds it: two writers of one run PATCH logs twice)."""
    from pipeline.run import open_job_run

    progress = setup_output(ctx, **pop_output(options))
    job = job_with_overrides(job_file, **options)
    run = open_job_run(job, run_id)
    ctx.obj["run_id"] = run.run_id
    with _job_lock(job, run.run_id):
        yield job, run, progress


@contextmanager
def _job_lock(job: Any, run_id: str | None) -> Iterator[Any]:
    """Hold the job's run lock (the one `run` takes), noting the run it is for."""
    from pipeline import lock

    data_dir = job.store.data_dir
    with lock.run_lock(data_dir, job.name, job.gateway.gateway_id) as held:
        if run_id is not None:
            lock.note_run(data_dir, held, run_id)
        yield held


def _with_client(job: Any, stage: Any) -> Any:
    import asyncio

    from pipeline.gateway import open_client
    from pipeline.run import stop_on_signals

    async def go() -> Any:
        async with open_client(job) as client:
            with stop_on_signals(client.budget):  # SIGTERM: finish what is in flight, then stop
                return await stage(client)

    return asyncio.run(go())


@cli.command("plan")
@_stage_options
def plan_command(ctx: click.Context, /, job_file: str, run_id: str, **options: Any) -> None:
    """Work out the exact PATCHes for a run's labels, and what they will cost.

    Writes plan.parquet in the run folder and prints the counts (patch, unchanged, kept, not
    found), the requests needed and the time they take at the job's budget. Sends no PATCH.

    \b
    Example:
      aigw-feedback plan jobs/nightly.toml --run 20261102T011500Z-nightly-3f2a
    """
    from pipeline.plan import plan

    with _stage(ctx, job_file, run_id, options) as (job, run, _):
        result = _with_client(job, lambda client: plan(job, run, client=client))
    emit_result(ctx, "plan", result, 0, run_id=run.run_id)


@cli.command("load")
@_stage_options
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
    from pipeline.load import LoadProgress, load, read_patches

    with _stage(ctx, job_file, run_id, options) as (job, run, progress):
        total = read_patches(run).height
        with progress.task(
            "load", total=total, unit="changes", budget_per_s=job.budget.rate_per_second
        ) as task:

            def show(p: LoadProgress) -> None:
                task.requests = p.sent_now
                task.advance(p.done - task.done)

            result = _with_client(job, lambda client: load(job, run, client=client, progress=show))
    emit_result(ctx, "load", result, 1 if result.failed or result.pending else 0, run_id=run_id)


@cli.command("verify")
@_stage_options
def verify_command(ctx: click.Context, /, job_file: str, run_id: str, **options: Any) -> None:
    """Read back every change a run's load applied and compare it with what was sent.

    Reads in batches of 50 (one list request each), re-checks mismatches after the job's
    [verify] recheck_wait, and writes verify.parquet and the run's report.{json,md,html}. Exit
    code 0 when everything is verified, 1 when something is mismatched or cannot be verified.

    \b
    Example:
      aigw-feedback verify jobs/nightly.toml --run 20261102T011500Z-nightly-3f2a
    """
    from pipeline.report import build_report
    from pipeline.verify import verify

    with _stage(ctx, job_file, run_id, options) as (job, run, _):
        result = _with_client(job, lambda client: verify(job, run, client=client))
        build_report(job, run)  # the run's last stage: its report is up to date now
    emit_result(ctx, "verify", result, 0 if result.ok else 1, run_id=run.run_id)


@cli.command("report")
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
def report_command(run_id: str, fmt: str, out: str | None, data_dir: str) -> None:
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

    from pipeline.errors import UsageError
    from pipeline.report import report

    folder = Path(out) if out not in (None, "-") else None
    result = report(run_id, Path(data_dir), out=folder)
    if folder is not None:
        click.echo(result.summary())
    elif fmt == "html" and out is None:
        if "html" not in result.paths:
            raise UsageError(
                f"run {run_id} has no report.html (it stopped before writing one); "
                "show it with --out - or write it with --out DIR"
            )
        click.echo(str(result.paths["html"]))
    else:
        click.echo(result.texts[fmt], nl=False)
    sys.exit(0 if result.ok else 1)


# -- run / backfill / runs / demo ---------------------------------------------------------------


def _finish(result: Any, log_format: str) -> None:
    """Print the summary (JSON for --log-format json), scrubbed, and exit with the result's code."""
    import json

    from pipeline.redaction import scrub

    if log_format == "json":
        click.echo(scrub(json.dumps(result.to_json(), default=str)))
    else:
        click.echo(scrub(result.summary()))
    sys.exit(result.exit_code)


dry_run_option = click.option(
    "--dry-run", is_flag=True, help="Stop after the plan: counts, requests, time; write nothing."
)


@cli.command("run")
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
    _finish(result, output["log_format"])


def _date(_ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    from datetime import date

    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2026-11-01") from None


@cli.command("backfill")
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
    _finish(result, output["log_format"])


@cli.command("runs")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default="data",
    show_default=True,
    help="The jobs' data dir.",
)
@click.option("--job", "job_name", metavar="NAME", help="Only this job's runs.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
def runs_command(data_dir: str, job_name: str | None, limit: int, as_json: bool) -> None:
    """Recent runs, newest first: id, job, window, status, counts, duration; and the watermarks.

    \b
    Examples:
      aigw-feedback runs
      aigw-feedback runs --data-dir demo-data --job nightly
      aigw-feedback runs --json --limit 5
    """
    import json
    from pathlib import Path

    from pipeline import history
    from pipeline.store import STATE_FILE

    if not (Path(data_dir) / STATE_FILE).is_file():  # looking must not create the data dir
        if not as_json:
            click.echo(f"no runs recorded yet in {data_dir}")
        return
    records = history.list_runs(Path(data_dir), job=job_name, limit=limit, readonly=True)
    if as_json:
        for record in records:
            click.echo(json.dumps(record.to_json()))
        return
    watermarks = history.list_watermarks(Path(data_dir), job=job_name, readonly=True)
    click.echo(history.runs_table(records, watermarks))


@cli.command("demo")
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


# -- emulator ---------------------------------------------------------------------------------
@cli.group("emulator")
def emulator_group() -> None:
    """A local AI Gateway Logs API: no account, no network, optional faults."""


def _token_option(values: tuple[str, ...]) -> dict[str, str] | None:
    if not values:
        return None
    tokens: dict[str, str] = {}
    for value in values:
        token, sep, scope = value.partition("=")
        if not sep or scope not in ("read", "edit") or not token:
            raise click.BadParameter(
                f"{value!r}: expected TOKEN=read or TOKEN=edit", param_hint="--token"
            )
        tokens[token] = scope
    return tokens


@emulator_group.command("serve")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to bind (keep loopback)."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8787,
    show_default=True,
    help="0 picks a free port.",
)
@click.option(
    "--seed",
    "seed_file",
    type=click.Path(exists=True, dir_okay=False),
    metavar="FILE",
    help="Logs to load (.jsonl, .jsonl.gz or a .json array). Default: the bundled sample.",
)
@click.option(
    "--generate",
    type=click.IntRange(min=0),
    metavar="N",
    help="Generate N logs over the last 7 days instead.",
)
@click.option(
    "--random-seed",
    type=int,
    default=0,
    show_default=True,
    metavar="S",
    help="Seed for --generate.",
)
@click.option(
    "--shift-to-yesterday/--no-shift",
    default=True,
    show_default=True,
    help="Move loaded logs by whole days so their newest day is yesterday (UTC).",
)
@click.option(
    "--db",
    default=":memory:",
    show_default=True,
    metavar="PATH",
    help="SQLite file to keep the logs in.",
)
@click.option("--account-id", default="0123456789abcdef0123456789abcdef", show_default=True)
@click.option("--gateway-id", default="demo-gateway", show_default=True)
@click.option(
    "--token",
    "tokens",
    multiple=True,
    metavar="TOKEN=SCOPE",
    help="Accepted token, scope read or edit; repeatable. Default: demo-edit-token=edit, demo-read-token=read.",
)
@click.option(
    "--rate-limit",
    type=click.IntRange(min=1),
    default=1200,
    show_default=True,
    help="Requests per window per token.",
)
@click.option(
    "--rate-window",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
)
@click.option(
    "--block-seconds",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Block after going over. Default: the window.",
)
@click.option(
    "--latency-ms", type=click.FloatRange(min=0), default=0.0, help="Fault: added to every answer."
)
@click.option(
    "--jitter-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Fault: random extra latency, up to this.",
)
@click.option(
    "--error-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Fault: share of requests answered 500/502/503.",
)
@click.option(
    "--drop-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Fault: share of connections dropped before any effect.",
)
@click.option(
    "--drop-after-write-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Fault: share of PATCH/DELETE dropped after being applied.",
)
@click.option(
    "--write-lag",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="SECONDS",
    help="Fault: PATCHes become visible this much later.",
)
@click.option(
    "--churn-insert",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Fault: logs inserted (dated inside the stored range) on every list.",
)
@click.option(
    "--churn-delete",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Fault: random logs deleted on every list.",
)
@click.option(
    "--fault-seed", type=int, default=0, show_default=True, help="Same seed, same faults."
)
@click.option("--access-log", is_flag=True, help="Log every request.")
def emulator_serve_command(
    host: str,
    port: int,
    seed_file: str | None,
    generate: int | None,
    random_seed: int,
    shift_to_yesterday: bool,
    db: str,
    account_id: str,
    gateway_id: str,
    tokens: tuple[str, ...],
    rate_limit: int,
    rate_window: float,
    block_seconds: float | None,
    latency_ms: float,
    jitter_ms: float,
    error_rate: float,
    drop_rate: float,
    drop_after_write_rate: float,
    write_lag: float,
    churn_insert: int,
    churn_delete: int,
    fault_seed: int,
    access_log: bool,
) -> None:
    """Serve the emulated Logs API until Ctrl-C or SIGTERM; prints its base URL and tokens.

    Loads the bundled sample (20,000 logs over 7 days, moved so the newest day is yesterday)
    unless told otherwise. Point a job's base_url, or the official SDK's base_url, at the
    printed URL and use one of the printed tokens.

    \b
    Examples:
      aigw-feedback emulator serve
      aigw-feedback emulator serve --port 0 --generate 5000 --random-seed 7
      aigw-feedback emulator serve --error-rate 0.05 --write-lag 2 --churn-insert 3
      CLOUDFLARE_API_TOKEN=demo-edit-token aigw-feedback run jobs/nightly.toml \\
          --base-url http://127.0.0.1:8787/client/v4
    """
    from pathlib import Path

    from pipeline.emulator.server import ServeOptions, serve
    from pipeline.emulator.settings import EmulatorSettings

    if seed_file is not None and generate is not None:
        raise click.UsageError("use --seed FILE or --generate N, not both")
    try:
        settings = EmulatorSettings(
            **({"tokens": t} if (t := _token_option(tokens)) else {}),
            rate_limit_requests=rate_limit,
            rate_limit_window=rate_window,
            block_seconds=block_seconds,
            latency_ms=latency_ms,
            jitter_ms=jitter_ms,
            error_rate=error_rate,
            drop_rate=drop_rate,
            drop_after_write_rate=drop_after_write_rate,
            write_lag_seconds=write_lag,
            churn_insert_per_list=churn_insert,
            churn_delete_per_list=churn_delete,
            seed=fault_seed,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    options = ServeOptions(
        host=host,
        port=port,
        db=db,
        seed_file=Path(seed_file) if seed_file else None,
        generate=generate,
        random_seed=random_seed,
        shift_to_yesterday=shift_to_yesterday,
        account_id=account_id,
        gateway_id=gateway_id,
        settings=settings,
        access_log=access_log,
    )
    try:
        serve(options, echo=click.echo)
    except OSError as exc:
        raise click.UsageError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


# -- label / sample ---------------------------------------------------------------------------


@cli.command("label")
@_stage_options
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
    import asyncio

    from pipeline.label import label

    with _stage(ctx, job_file, run_id, options) as (job, run, _):
        external = job.labels.external
        if external.enabled and external.fetch_heads:
            result = _with_client(job, lambda client: label(job, run, client=client))
        else:
            result = asyncio.run(label(job, run))
    emit_result(ctx, "label", result, 0, run_id=run.run_id)


@cli.command("sample")
@click.argument("job_file", metavar="JOB", type=click.Path(dir_okay=False))
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="How many logs.")
@click.option(
    "--out", type=click.Path(dir_okay=False), required=True, help="The CSV file to write."
)
@click.option("--where", metavar="SQL", help="Only logs matching this SQL condition.")
@click.option("--stratify-by", metavar="COL", help="Spread evenly over a column or metadata.<key>.")
@click.option("--window", metavar="SPEC", help="Only these days (default: all extracted logs).")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same sample.")
@data_dir_option
def sample_command(
    job_file: str,
    n: int,
    out: str,
    where: str | None,
    stratify_by: str | None,
    window: str | None,
    seed: int,
    data_dir: str | None,
) -> None:
    """Export extracted logs for analysts to label, as a CSV the inbox reads back.

    The file has log_id, columns to judge by, and empty feedback, score and reason columns. Fill
    them in (1/-1, up/down, good/bad, 👍/👎; score 0-100) and drop the file into the job's inbox.

    \b
    Examples:
      aigw-feedback sample jobs/nightly.toml --n 200 --out review.csv
      aigw-feedback sample jobs/nightly.toml --n 100 --out review.csv \\
          --where "status_code = 200 AND provider = 'openai'" --stratify-by metadata.app \\
          --window 2026-11-01..2026-11-07 --seed 7
    """
    from pathlib import Path

    from pipeline.sample import sample

    job = job_with_overrides(job_file, data_dir=data_dir)
    result = sample(
        job,
        n=n,
        out=Path(out),
        where=where,
        stratify_by=stratify_by,
        window=window,
        seed=seed,
    )
    click.echo(result.summary())


# -- extract ----------------------------------------------------------------------------------


@cli.command("extract")
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
    import shlex
    from datetime import UTC, datetime

    from pipeline import lock, store
    from pipeline.errors import UsageError
    from pipeline.extract import extract
    from pipeline.run import open_job_run
    from pipeline.window import parse_window

    progress = setup_output(ctx, **pop_output(options))
    job = job_with_overrides(job_file, **options)
    if run_id is not None and window_spec is not None:
        raise UsageError("--run extracts the run's own window; leave out --window")
    run = open_job_run(job, run_id) if run_id is not None else None
    spec = window_spec or job.window.default
    window = run.window if run else parse_window(
        spec, now=datetime.now(UTC), lag_seconds=job.window.lag_seconds
    )  # fmt: skip
    with _job_lock(job, run_id) as held:
        created = run is None
        if run is None:
            run = store.start_run(job, window)
            lock.note_run(job.store.data_dir, held, run.run_id)
        ctx.obj["run_id"] = run.run_id
        result = _with_client(
            job, lambda client: extract(job, window, client=client, progress=progress, run=run)
        )
    following = f"aigw-feedback label {shlex.quote(job_file)} --run {run.run_id}"
    lines = [f"run {run.run_id} created for this window"] if created else []
    emit_result(
        ctx,
        "extract",
        result,
        0 if result.complete else 1,
        run_id=run.run_id,
        lines=[*lines, f"next: {following}"],
        fields={"created": created, "next": following},
    )
