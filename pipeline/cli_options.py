"""Click options every job command shares, and turning them into a job and a Progress.

    @cli.command("extract")
    @click.argument("job_file", metavar="JOB", type=click.Path(dir_okay=False))
    @job_options            # --data-dir --base-url --max-requests --max-duration
    @output_options         # --quiet/-q --verbose/-v --log-format
    @click.pass_context
    def extract_command(ctx, job_file, **options):
        progress = setup_output(ctx, **pop_output(options))
        job = job_with_overrides(job_file, **options)

Option names (and so the keyword arguments they give) are stable: data_dir, base_url,
max_requests, max_duration, quiet, verbose, log_format.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

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

    if quiet and verbose:
        raise UsageError("--quiet and --verbose contradict each other: choose one")
    ctx.ensure_object(dict)["verbose"] = verbose
    configure_logging(
        verbosity="quiet" if quiet else "verbose" if verbose else "normal", fmt=log_format
    )
    return Progress(enabled=not quiet and log_format == "text")


def pop_output(options: dict[str, Any]) -> dict[str, Any]:
    """Take quiet, verbose and log_format out of a command's keyword arguments."""
    return {k: options.pop(k) for k in ("quiet", "verbose", "log_format") if k in options}
