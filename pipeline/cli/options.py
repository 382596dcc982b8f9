"""Click options the commands share, turning them into a job and a Progress, and printing.

    @click.command("plan")
    @stage_options          # JOB --run RUN_ID, the job options and the output options
    def plan_command(ctx, /, job_file, run_id, **options):
        progress = setup_output(ctx, **pop_output(options))
        job = job_with_overrides(job_file, **options)
        outcome = asyncio.run(run_stage(job, "plan", run_id=run_id, progress=progress))
        echo_result(ctx, outcome)
        sys.exit(outcome.exit_code)

Option names (and so the keyword arguments they give) are stable: data_dir, base_url,
max_requests, max_duration, quiet, verbose, log_format.

With ``--log-format json`` every line a command prints is one JSON object: log lines on stderr
(pipeline.logging_setup), the result on stdout (`echo_result`), and on a failure an error line on
stderr and a summary object with ``"status": "failed"`` on stdout (`report_failure`), so a scheduler
always finds exactly one summary object on stdout and the exit code in it.

Nothing here imports more than click at import time (`aigw-feedback --help` stays fast).
"""

from __future__ import annotations

import itertools
import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar

import click

from pipeline.errors import UsageError

if TYPE_CHECKING:  # imported when used: `aigw-feedback --help` stays fast
    from pipeline.config import JobConfig
    from pipeline.progress import Progress

F = TypeVar("F", bound=Callable[..., Any])

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Override the job's [store] data_dir.",
)
base_url_option = click.option(
    "--base-url", metavar="URL", help="Logs API base URL (e.g. the emulator's .../client/v4)."
)
max_requests_option = click.option(
    "--max-requests",
    type=click.IntRange(min=1),
    metavar="N",
    help="Stop cleanly after N API requests; run again to continue.",
)
max_duration_option = click.option(
    "--max-duration",
    metavar="DUR",
    help="Stop cleanly after DUR (90s, 20m, 2h); run again to continue.",
)
quiet_option = click.option(
    "--quiet", "-q", is_flag=True, help="No progress, only errors and the final summary."
)
verbose_option = click.option(
    "--verbose", "-v", is_flag=True, help="Debug logging, tracebacks for errors."
)
log_format_option = click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per log line and the summary as JSON, for schedulers.",
)


def _apply(fn: F, *decorators: Callable[[F], F]) -> F:
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


def job_options(fn: F) -> F:
    """--data-dir, --base-url, --max-requests, --max-duration."""
    return _apply(fn, data_dir_option, base_url_option, max_requests_option, max_duration_option)


def output_options(fn: F) -> F:
    """--quiet/-q, --verbose/-v, --log-format."""
    return _apply(fn, quiet_option, verbose_option, log_format_option)


def stage_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """JOB --run RUN_ID, the job options and the output options, and the click context:
    every command for one stage of a recorded run."""
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


def job_with_overrides(
    job_file: str,
    *,
    data_dir: str | None = None,
    base_url: str | None = None,
    max_requests: int | None = None,
    max_duration: str | None = None,
) -> JobConfig:
    """The job file with the command line's overrides applied (ConfigError/UsageError if wrong)."""
    from pipeline.config import load_job, parse_duration
    from pipeline.logging_setup import redact

    try:
        seconds = parse_duration(max_duration) if max_duration is not None else None
    except ValueError as exc:
        raise UsageError(f"--max-duration: {exc}") from None
    job = load_job(Path(job_file))
    redact(job.gateway.token)  # never in a log line or a printed error from here on
    return job.with_overrides(
        data_dir=Path(data_dir) if data_dir is not None else None,
        base_url=base_url.rstrip("/") if base_url else None,
        max_requests=max_requests,
        max_duration_seconds=seconds,
    )


def setup_output(
    ctx: click.Context, *, quiet: bool = False, verbose: bool = False, log_format: str = "text"
) -> Progress:
    """Logging for the command, and its Progress; remembers --verbose for the error handler."""
    from pipeline.logging_setup import configure_logging
    from pipeline.progress import Progress

    obj = ctx.ensure_object(dict)
    obj["log_format"] = log_format
    if quiet and verbose:
        raise UsageError("--quiet and --verbose contradict each other: choose one")
    obj["verbose"] = verbose
    configure_logging(
        verbosity="quiet" if quiet else "verbose" if verbose else "normal", fmt=log_format
    )
    return Progress(enabled=not quiet and log_format == "text")


def pop_output(options: dict[str, Any]) -> dict[str, Any]:
    """Take quiet, verbose and log_format out of a command's keyword arguments."""
    return {k: options.pop(k) for k in ("quiet", "verbose", "log_format") if k in options}


# ---------------------------------------------------------------------------------------------
# What a command prints: its result, or its failure (text, or JSON objects for schedulers)

ARGV = "aigw-feedback.argv"  # ctx.meta key: the command line, for errors before options are read


def wants_json(ctx: click.Context) -> bool:
    """Whether output is JSON: --log-format json, even if the command failed before reading it."""
    obj = ctx.obj or {}
    if "log_format" in obj:
        return bool(obj["log_format"] == "json")
    argv = list(ctx.meta.get(ARGV, ()))
    return "--log-format=json" in argv or any(
        a == "--log-format" and b == "json" for a, b in itertools.pairwise(argv)
    )


class Printable(Protocol):
    """A library result as a command prints it."""

    def summary(self) -> str: ...
    def to_json(self) -> dict[str, Any]: ...


def echo_result(ctx: click.Context, result: Printable) -> None:
    """Print a command's result, scrubbed: its summary(), or in JSON mode its to_json() as one
    object. The command then leaves with ``sys.exit(result.exit_code)``."""
    from pipeline.redaction import scrub

    if wants_json(ctx):
        click.echo(scrub(json.dumps(result.to_json(), default=str)))
    else:
        click.echo(scrub(result.summary()))


def remember_run(ctx: click.Context) -> Callable[[str], None]:
    """Told the run id as soon as the library knows it, so that a failure summary names it."""

    def remember(run_id: str) -> None:
        ctx.ensure_object(dict)["run_id"] = run_id

    return remember


def report_failure(
    ctx: click.Context, *, message: str, exit_code: int, kind: str, traceback_ok: bool = True
) -> NoReturn:
    """The one way a command fails: `error: ...` on stderr (the traceback first with --verbose);
    in JSON mode an error line on stderr and a failed summary on stdout. Always scrubbed."""
    from pipeline.logging_setup import json_line
    from pipeline.redaction import scrub

    obj = ctx.obj or {}
    verbose = bool(obj.get("verbose")) and traceback_ok
    if wants_json(ctx):
        fields: dict[str, Any] = {"error": kind, "exit_code": exit_code}
        if verbose:
            fields["traceback"] = traceback.format_exc()
        click.echo(json_line("error", message, logger="pipeline.cli", fields=fields), err=True)
        summary = {
            "command": ctx.invoked_subcommand,
            "run_id": obj.get("run_id"),
            "status": "failed",
            "exit_code": exit_code,
            "error": kind,
            "message": message,
        }
        click.echo(scrub(json.dumps(summary, default=str)))
    else:
        if verbose:
            click.echo(scrub(traceback.format_exc()), err=True)
        click.echo(scrub(f"error: {message}"), err=True)
    sys.exit(exit_code)
