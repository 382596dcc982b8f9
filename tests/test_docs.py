"""The README documents every command: a reader finds each one with an example of its use."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from pipeline.cli import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def command_paths() -> list[str]:
    """ "run", "backfill", "emulator serve"...: every command a user can type (groups excluded)."""
    out: list[str] = []

    def walk(group: click.Group, prefix: str) -> None:
        for name, command in sorted(group.commands.items()):
            path = f"{prefix}{name}"
            if isinstance(command, click.Group):
                walk(command, f"{path} ")
            else:
                out.append(path)

    walk(cli, "")
    return out


def code_blocks(text: str) -> str:
    """Everything inside ``` fences, where the examples live."""
    return "\n".join(re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S))


def readme() -> str:
    text = README.read_text(encoding="utf-8") if README.exists() else ""
    if not text.strip():
        pytest.skip("README.md is still empty")
    return text


@pytest.mark.parametrize("command", command_paths())
def test_every_command_has_an_example_in_the_readme(command: str) -> None:
    """Each command appears in a README code block as `aigw-feedback <command> ...`."""
    examples = code_blocks(readme())
    pattern = rf"aigw-feedback {re.escape(command)}(\s|$)"
    assert re.search(pattern, examples), f"README.md has no example of `aigw-feedback {command}`"


def test_readme_points_to_help() -> None:
    """The README tells readers that every command has --help with examples."""
    assert re.search(r"aigw-feedback( [a-z]+)* --help", code_blocks(readme()) + readme())


@pytest.mark.parametrize("code", [0, 1, 2, 3, 4])
def test_every_exit_code_is_explained(code: int) -> None:
    """Schedulers act on exit codes, so the README lists each one (`N`, a table cell or a bullet)."""
    text = readme()
    assert re.search(r"exit code", text, flags=re.I), "README.md has no section on exit codes"
    listed = rf"(`{code}`|\|\s*{code}\s*\||^\s*[-*]\s*\**{code}\b)"
    assert re.search(listed, text, flags=re.M), f"exit code {code} is not listed in README.md"
