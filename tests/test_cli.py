"""The command line: exit codes, plain error messages, no token anywhere, help for every command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from pipeline.cli import _Group, cli
from pipeline.cli.options import output_options, pop_output, setup_output
from pipeline.redaction import redact
from tests.runkit import D0, TOKEN_ENV, admin, emulator, write_job

SECRET = "sk-test-SECRET-token-0f9e8d7c"


def invoke(args: list[str], token: str | None = None) -> Result:
    env = {TOKEN_ENV: token} if token is not None else {}
    return CliRunner().invoke(cli, args, env=env)


def all_commands() -> list[list[str]]:
    """Every command path, e.g. ["run"], ["emulator", "serve"]."""
    out: list[list[str]] = []

    def walk(group: click.Group, prefix: list[str]) -> None:
        for name, command in sorted(group.commands.items()):
            out.append([*prefix, name])
            if isinstance(command, click.Group):
                walk(command, [*prefix, name])

    walk(cli, [])
    return out


@pytest.mark.parametrize("path", all_commands(), ids=" ".join)
def test_every_command_has_help_with_an_example(path: list[str]) -> None:
    """`aigw-feedback <command> --help` works and shows at least one example."""
    result = invoke([*path, "--help"])
    assert result.exit_code == 0, result.output
    command = cli.get_command(click.Context(cli), path[0])
    if isinstance(command, click.Group) and len(path) == 1:
        return
    assert "aigw-feedback " + " ".join(path) in result.output


def test_run_that_verifies_everything_exits_0(tmp_path: Path) -> None:
    """A complete run exits 0 and prints what it did and where the report is."""
    with emulator(days=1) as emu:
        job = write_job(tmp_path, emu.base_url)
        result = invoke(["run", str(job), "--window", str(D0.date()), "-q"], emu.edit_token)
    assert result.exit_code == 0, result.output
    assert "status ok" in result.stdout
    assert "report.html" in result.stdout


def test_capped_run_exits_1_and_says_how_to_continue(tmp_path: Path) -> None:
    """A run stopped by --max-requests exits 1 with the command that continues it."""
    with emulator(days=1) as emu:
        job = write_job(tmp_path, emu.base_url)
        args = ["run", str(job), "--window", str(D0.date()), "--max-requests", "3", "-q"]
        result = invoke(args, emu.edit_token)
    assert result.exit_code == 1, result.output
    assert "status partial" in result.stdout
    assert "--run " in result.stdout


def test_bad_job_file_exits_2_naming_the_key_and_the_file(tmp_path: Path) -> None:
    """A typo in the job file is exit 2 with the key and the file, and no traceback."""
    job = write_job(tmp_path, "http://127.0.0.1:9", extra="[load]\nprecedense = ['csv']\n")
    result = invoke(["run", str(job)], SECRET)
    assert result.exit_code == 2
    assert "load.precedense" in result.stderr
    assert str(job) in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_token_exits_2_naming_the_variable(tmp_path: Path) -> None:
    """Without the token variable the run says which variable to set."""
    job = write_job(tmp_path, "http://127.0.0.1:9")
    result = invoke(["run", str(job)])
    assert result.exit_code == 2
    assert TOKEN_ENV in result.stderr


def test_bad_window_and_bad_dates_exit_2(tmp_path: Path) -> None:
    """A window or a date that cannot be read is a usage error with an example."""
    job = write_job(tmp_path, "http://127.0.0.1:9")
    result = invoke(["run", str(job), "--window", "last tuesday"], SECRET)
    assert result.exit_code == 2
    assert "2026-11-01" in result.stderr
    result = invoke(["backfill", str(job), "--from", "1st of May", "--to", "2026-05-02"], SECRET)
    assert result.exit_code == 2
    assert "not a date" in result.output


def test_refused_token_exits_3_and_never_shows_the_token(tmp_path: Path) -> None:
    """A token without Edit permission: exit 3 with a hint; the token is in no output, even -v."""
    with emulator(days=1, tokens={SECRET: "read"}) as emu:
        job = write_job(tmp_path, emu.base_url)
        for extra in ([], ["--verbose"], ["--log-format", "json", "--verbose"]):
            result = invoke(["run", str(job), "--window", str(D0.date()), *extra], SECRET)
            assert result.exit_code == 3, result.output
            assert "AI Gateway" in result.stderr and "Edit" in result.stderr
            assert SECRET not in result.output
            assert SECRET not in result.stderr
            assert ("Traceback" in result.stderr) == ("--verbose" in extra)


def test_json_log_format_gives_json_lines_and_a_json_summary(tmp_path: Path) -> None:
    """--log-format json: every log line and the summary parse as JSON; no token in them."""
    with emulator(days=1, tokens={SECRET: "edit"}) as emu:
        job = write_job(tmp_path, emu.base_url)
        result = invoke(
            ["run", str(job), "--window", str(D0.date()), "--log-format", "json", "-v"], SECRET
        )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert lines and all({"ts", "level", "message"} <= set(line) for line in lines)
    summary = json.loads(result.stdout)
    assert summary["status"] == "ok" and summary["exit_code"] == 0
    assert SECRET not in result.output and SECRET not in result.stderr


def test_quiet_prints_only_the_summary(tmp_path: Path) -> None:
    """--quiet (for cron): no log lines or progress, just the final summary."""
    with emulator(days=1) as emu:
        job = write_job(tmp_path, emu.base_url)
        result = invoke(["run", str(job), "--window", str(D0.date()), "--quiet"], emu.edit_token)
    assert result.exit_code == 0
    assert result.stderr == ""
    assert result.stdout.startswith("run ")


def test_runs_lists_recent_runs_and_the_watermark(tmp_path: Path) -> None:
    """`runs` shows each run's id, window, status and counts, and the job's watermark."""
    with emulator(days=1) as emu:
        job = write_job(tmp_path, emu.base_url)
        invoke(["run", str(job), "--window", str(D0.date()), "-q"], emu.edit_token)
        invoke(["run", str(job), "--window", str(D0.date()), "--dry-run", "-q"], emu.edit_token)
    data_dir = str(tmp_path / "data")
    result = invoke(["runs", "--data-dir", data_dir])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[:6] == ["RUN", "JOB", "GATEWAY", "MODE", "WINDOW", "STATUS"]
    assert "dry_run" in lines[1] and "ok" in lines[2]
    assert str(D0.date()) in lines[2]
    as_json = invoke(["runs", "--data-dir", data_dir, "--json", "--job", "nightly"])
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [r["status"] for r in records] == ["dry_run", "ok"]
    assert invoke(["runs", "--data-dir", str(tmp_path / "nowhere")]).stdout.startswith("no runs")


def buggy_cli() -> click.Group:
    """The CLI's error handling around one command with a bug in it (a ValueError)."""

    @click.group(cls=_Group)
    def group() -> None:
        pass

    @group.command("boom")
    @output_options
    @click.pass_context
    def boom(ctx: click.Context, **options: Any) -> None:
        setup_output(ctx, **pop_output(options))
        raise ValueError(f"a bug near {SECRET}")

    return group


def test_unexpected_errors_are_one_sentence_without_verbose() -> None:
    """Even a bug shows as one line unless --verbose asks for the traceback, and never shows
    the token; with --log-format json it is a JSON error line and a failed summary."""
    redact(SECRET)
    runner = CliRunner()
    plain = runner.invoke(buggy_cli(), ["boom"])
    verbose = runner.invoke(buggy_cli(), ["boom", "--verbose"])
    as_json = runner.invoke(buggy_cli(), ["boom", "--log-format", "json"])
    assert plain.exit_code == verbose.exit_code == as_json.exit_code == 1
    assert (
        plain.stderr
        == "error: unexpected ValueError: a bug near *** (run with --verbose for the traceback)\n"
    )
    assert "Traceback" in verbose.stderr and SECRET not in verbose.stderr
    (line,) = [json.loads(x) for x in as_json.stderr.splitlines()]
    assert line["level"] == "error" and line["error"] == "ValueError" and line["exit_code"] == 1
    assert json.loads(as_json.stdout)["status"] == "failed"
    assert SECRET not in as_json.output + as_json.stderr


def test_backfill_command_reports_each_day_and_exits_by_completeness(tmp_path: Path) -> None:
    """`backfill` prints a line per day; capped it exits 1, run again it finishes and exits 0."""
    with emulator(logs_per_day=6, days=3) as emu:
        job = write_job(tmp_path, emu.base_url, name="backfill")
        args = ["backfill", str(job), "--from", str(D0.date()), "--to", "2026-11-12", "-q"]
        capped = invoke([*args, "--max-requests", "6"], emu.edit_token)
        again = invoke(args, emu.edit_token)
    assert capped.exit_code == 1, capped.output
    assert "Run the same command again" in capped.stdout
    assert again.exit_code == 0, again.output
    assert "3 of 3 days verified" in again.stdout


def test_a_dry_run_can_be_finished_one_stage_command_at_a_time(tmp_path: Path) -> None:
    """`run --dry-run`, then `label`, `plan`, `load`, `verify`, `report` on its run id apply and
    verify every planned change, exactly as `run` would."""
    with emulator(days=1) as emu:
        job = str(write_job(tmp_path, emu.base_url))
        dry = invoke(["run", job, "--window", str(D0.date()), "--dry-run", "-q"], emu.edit_token)
        assert dry.exit_code == 0, dry.output
        (run_dir,) = (tmp_path / "data" / "runs").iterdir()
        run_id = run_dir.name
        for stage in ("extract", "label", "plan", "load", "verify"):
            result = invoke([stage, job, "--run", run_id, "-q"], emu.edit_token)
            assert result.exit_code == 0, f"{stage}: {result.output}"
        patched = sum(admin(emu, "patches")["by_log"].values())
    report = invoke(["report", run_id, "--format", "json", "--data-dir", str(tmp_path / "data")])
    assert report.exit_code == 0, report.output
    data = json.loads(report.stdout)
    assert data["status"] == "ok"
    assert data["load"]["patched"] == data["plan"]["patch"] == data["verify"]["verified"] == patched
    assert patched > 0
