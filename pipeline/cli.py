"""The `aigw-feedback` command. It does no work: parse, build config, call one library function, print.

Only here do exceptions become messages and exit codes:
0 ok, 1 some changes failed or are unverified, 2 usage/config, 3 auth/permission, 4 lock held.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from pipeline.errors import PipelineError


class _Group(click.Group):
    """Turns PipelineError into one or two plain sentences on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PipelineError as exc:
            if ctx.obj and ctx.obj.get("verbose"):
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


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
