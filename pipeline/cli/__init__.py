"""The `aigw-feedback` command. It does no work: parse, build config, call one library function, print.

Only here do exceptions become messages and exit codes:
0 ok, 1 some changes failed or are unverified, 2 usage/config, 3 auth/permission, 4 lock held.

    __init__   the group, and exceptions -> messages and exit codes
    options    the options commands share; printing a result or a failure (text or JSON)
    stages     extract, label, plan, load, verify (pipeline.stage), report, sample
    jobs       run, backfill, runs, demo
    emulator   emulator serve

Every command imports what it calls inside its function, so `aigw-feedback --help` loads click and
these modules only (no polars, pyarrow or httpx), and a run loads polars, pyarrow and jinja2 only
for the stages that use them, after its first request (see pipeline.run).
"""

from __future__ import annotations

import errno
import sys
from typing import Any, NoReturn

import click

from pipeline.cli.apply import COMMANDS as APPLY_COMMANDS
from pipeline.cli.emulator import COMMANDS as EMULATOR_COMMANDS
from pipeline.cli.jobs import COMMANDS as JOB_COMMANDS
from pipeline.cli.options import ARGV, report_failure, wants_json
from pipeline.cli.stages import COMMANDS as STAGE_COMMANDS
from pipeline.errors import PipelineError

__all__ = ["cli", "main"]

# httpx's package imports httpx's own command line (httpx._main), and that loads rich's console,
# tables and syntax highlighting and pygments whenever they are installed (rich is: our progress
# bar), about 50 ms of every start of ours. This process is aigw-feedback's command line and never
# runs httpx's, so that module is marked absent here, before any command imports httpx: httpx
# then defines its stub `httpx.main` instead (its own fallback for a missing CLI extra).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


class _Group(click.Group):
    """Turns exceptions into one or two plain sentences on stderr and an exit code (or, with
    --log-format json, an error line and a failed summary: see options.report_failure)."""

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


for _command in (*STAGE_COMMANDS, *JOB_COMMANDS, *APPLY_COMMANDS, *EMULATOR_COMMANDS):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="aigw-feedback")
