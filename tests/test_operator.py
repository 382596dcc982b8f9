"""Operator ergonomics: JSON lines for schedulers, data dir problems, run ids, the run lock for stage
commands, file permissions, and the README's stage-by-stage flow, all through the command line."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result
from starlette.applications import Starlette

from pipeline.cli import cli
from pipeline.emulator import EmulatorSettings, RunningEmulator, generate_logs, running_emulator
from pipeline.emulator.settings import DEFAULT_EDIT_TOKEN, DEFAULT_GATEWAY_ID
from pipeline.errors import DataDirError, UsageError
from pipeline.stage import Stage, StageOutcome, run_stage
from pipeline.state import lock
from pipeline.state.database import state_db
from tests.conftest import ManualClock
from tests.runkit import ACCOUNT, D0, FAST, TOKEN_ENV, emulator, load, patches_by_log, write_job

README = Path(__file__).resolve().parents[1] / "README.md"


def invoke(args: list[str], token: str | None = None) -> Result:
    env = {TOKEN_ENV: token} if token is not None else {}
    return CliRunner().invoke(cli, args, env=env)


def json_lines(text: str) -> list[dict[str, object]]:
    """Every non-empty line parsed as one JSON object (fails the test if one is not)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def dry_run(job: Path, token: str) -> str:
    """A planned run with nothing sent yet; its run id."""
    result = invoke(["run", str(job), "--window", str(D0.date()), "--dry-run", "-q"], token)
    assert result.exit_code == 0, result.output
    (run_dir,) = (job.parent / "data" / "runs").iterdir()
    return run_dir.name


# -- the README's stage-by-stage flow ---------------------------------------------------------


@contextmanager
def recent_emulator() -> Iterator[RunningEmulator]:
    """The emulator with logs over the last three days, so `--window yesterday` finds some."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    logs = generate_logs(150, seed=3, start=end - timedelta(days=3), end=end)
    settings = EmulatorSettings(rate_limit_requests=FAST)
    with running_emulator(
        settings=settings, logs=logs, account_id=ACCOUNT, gateway_id="test-gateway"
    ) as emu:
        yield emu


def readme_stage_commands() -> list[list[str]]:
    """The README's "One stage at a time" commands, as argv lists without `aigw-feedback`."""
    text = README.read_text(encoding="utf-8")
    block = text[text.index("# One stage at a time") :].split("\n\n", 1)[0]
    return [shlex.split(line)[1:] for line in block.splitlines() if line.startswith("aigw-")]


def test_the_readmes_stage_by_stage_commands_work_as_written(tmp_path: Path) -> None:
    """`extract --window yesterday` creates a run and prints its id and the next command;
    `label`, `plan`, `load` and `verify` with that id then write and verify every change."""
    commands = readme_stage_commands()
    assert [c[0] for c in commands] == ["extract", "label", "plan", "load", "verify"]
    with recent_emulator() as emu:
        job = str(write_job(tmp_path, emu.base_url))
        extract = invoke([a.replace("jobs/nightly.toml", job) for a in commands[0]], emu.edit_token)
        assert extract.exit_code == 0, extract.output
        match = re.search(r"next: aigw-feedback label (\S+) --run (\S+)", extract.stdout)
        assert match is not None, extract.stdout
        assert match.group(1) == job
        run_id = match.group(2)
        for command in commands[1:]:
            args = [a.replace("jobs/nightly.toml", job).replace("RUN_ID", run_id) for a in command]
            result = invoke(args, emu.edit_token)
            assert result.exit_code == 0, f"{args}: {result.output}"
        patched = patches_by_log(emu)
        again = invoke(["extract", job, "--run", run_id, "-q"], emu.edit_token)
    assert "verified" in result.stdout
    assert patched and set(patched.values()) == {1}
    assert again.exit_code == 0, again.output
    assert "created" not in again.stdout and f"--run {run_id}" in again.stdout


def test_a_stage_runs_from_python_as_its_command_runs_it(
    tmp_path: Path, emulator_app: Starlette, emulator_clock: ManualClock
) -> None:
    """`pipeline.stage.run_stage` is a stage command without the command line: extract without a
    run id starts a run and names the next command; label, plan, load and verify on that run exit
    0 and verify writes the report; a stage without its run, or extract with both, is refused."""
    path = write_job(tmp_path, "http://emulator.test/client/v4", gateway_id=DEFAULT_GATEWAY_ID)
    job = load(path, DEFAULT_EDIT_TOKEN)
    transport = httpx.ASGITransport(app=emulator_app)
    now = datetime(2026, 11, 25, tzinfo=UTC)

    def stage(name: Stage, **kwargs: str) -> StageOutcome:
        return asyncio.run(
            run_stage(
                job,
                name,
                transport=transport,
                now=now,
                clock=emulator_clock,
                sleep=emulator_clock.sleep,
                **kwargs,
            )
        )

    extracted = stage("extract", window="2026-11-20")
    assert extracted.created and extracted.exit_code == 0
    assert extracted.next_command == f"aigw-feedback label {path} --run {extracted.run_id}"
    assert extracted.to_json()["next"] == extracted.next_command
    outcomes = [
        stage(name, run_id=extracted.run_id) for name in ("label", "plan", "load", "verify")
    ]
    assert [(o.stage, o.run_id, o.exit_code, o.created) for o in outcomes] == [
        (name, extracted.run_id, 0, False) for name in ("label", "plan", "load", "verify")
    ]
    assert outcomes[-1].to_json()["verified"] == outcomes[-2].to_json()["patched"] > 0
    assert (tmp_path / "data" / "runs" / extracted.run_id / "report.json").is_file()
    with pytest.raises(UsageError, match="leave out --window"):
        stage("extract", run_id=extracted.run_id, window="2026-11-20")
    with pytest.raises(UsageError, match="run id"):
        stage("plan")


# -- the run lock ---------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["extract", "label", "plan", "load", "verify"])
def test_a_stage_command_refuses_while_the_job_is_running(tmp_path: Path, stage: str) -> None:
    """While another process holds the job's lock, a stage command exits 4, naming the holder,
    sends nothing, and leaves the holder's lock in place."""
    with emulator(days=1) as emu:
        job = write_job(tmp_path, emu.base_url)
        run_id = dry_run(job, emu.edit_token)
        data_dir = tmp_path / "data"
        held = lock.acquire(data_dir, "nightly", "test-gateway", run_id=run_id, pid=os.getpid())
        result = invoke([stage, str(job), "--run", run_id], emu.edit_token)
        patched = patches_by_log(emu)
    assert result.exit_code == 4, result.output
    assert "already running" in result.stderr and str(os.getpid()) in result.stderr
    assert patched == {}
    assert lock.current_holder(data_dir, "nightly", "test-gateway") == held


# -- run ids and data dirs ------------------------------------------------------------------


def test_an_unknown_run_id_is_a_usage_error_that_says_how_to_list_runs(tmp_path: Path) -> None:
    """`label JOB --run <typo>` exits 2 with the `runs` command that lists the real ids."""
    job = write_job(tmp_path, "http://127.0.0.1:9")
    for command in (["label", str(job), "--run", "20261102T011500Z-nightly-dead"],
                    ["run", str(job), "--run", "../../etc"]):  # fmt: skip
        result = invoke(command, "tok-unknown-run-0001")
        assert result.exit_code == 2, result.output
        assert "aigw-feedback runs --data-dir" in result.stderr
        assert "unexpected" not in result.stderr


def test_runs_on_a_missing_data_dir_says_so_and_creates_nothing(tmp_path: Path) -> None:
    """`runs --data-dir X` for a dir that does not exist: exit 0, "no runs recorded yet in X",
    and X is still not there (a typo must not leave folders behind)."""
    missing = tmp_path / "no-such-data"
    result = invoke(["runs", "--data-dir", str(missing)])
    as_json = invoke(["runs", "--data-dir", str(missing), "--json"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"no runs recorded yet in {missing}"
    assert as_json.exit_code == 0 and as_json.stdout == ""
    assert not missing.exists()


@pytest.mark.parametrize("where", ["under-a-file", "is-a-file"])
def test_an_unusable_data_dir_names_the_path_and_exits_2(tmp_path: Path, where: str) -> None:
    """A data dir that cannot be created or is not a folder: exit 2, the path and what to do;
    not `unexpected OperationalError: unable to open database file`."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    data_dir = blocker / "data" if where == "under-a-file" else blocker
    job = write_job(tmp_path, "http://127.0.0.1:9")
    result = invoke(["run", str(job), "--data-dir", str(data_dir)], "tok-data-dir-0001")
    assert result.exit_code == 2, result.output
    assert str(data_dir) in result.stderr and "--data-dir" in result.stderr
    assert "unexpected" not in result.stderr


def test_a_read_only_look_at_the_state_never_creates_it(tmp_path: Path) -> None:
    """state_db(readonly=True): a missing database is an error naming it, with no folder
    created; an existing one can be read but not written."""
    missing = tmp_path / "nothing-here"
    expected = pytest.raises(DataDirError, match=re.escape(str(missing / "state.sqlite")))
    with expected, state_db(missing, readonly=True):
        pass
    assert not missing.exists()
    with state_db(tmp_path / "data") as db:
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (1)")
    with state_db(tmp_path / "data", readonly=True) as db:
        assert db.execute("SELECT x FROM t").fetchall() == [(1,)]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            db.execute("INSERT INTO t VALUES (2)")


# -- file permissions -----------------------------------------------------------------------


def test_run_folder_files_follow_the_umask(tmp_path: Path) -> None:
    """With umask 027 every file of a run folder is rw-r----- (group can read the reports),
    not tempfile's rw-------."""
    old = os.umask(0o027)
    try:
        with emulator(days=1) as emu:
            job = write_job(tmp_path, emu.base_url)
            result = invoke(["run", str(job), "--window", str(D0.date()), "-q"], emu.edit_token)
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "data" / "runs").iterdir()
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"report.html", "report.json", "plan.parquet", "run.json"}
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    assert set(modes.values()) == {0o640}, modes


# -- JSON lines -------------------------------------------------------------------------------


def test_json_errors_are_json_lines_and_a_failed_summary(tmp_path: Path) -> None:
    """--log-format json and a job file error: stderr is JSON lines (level error, exit_code 2,
    the error's kind), stdout one summary object with status failed."""
    job = write_job(tmp_path, "http://127.0.0.1:9", extra="[load]\nprecedense = ['csv']\n")
    result = invoke(["run", str(job), "--log-format", "json"], "tok-json-errors-0001")
    assert result.exit_code == 2
    (error,) = json_lines(result.stderr)
    assert error["level"] == "error" and error["exit_code"] == 2
    assert error["error"] == "ConfigError" and "load.precedense" in str(error["message"])
    (summary,) = json_lines(result.stdout)
    assert summary["status"] == "failed" and summary["exit_code"] == 2
    assert summary["command"] == "run" and "load.precedense" in str(summary["message"])


def test_json_mode_covers_bad_options_too(tmp_path: Path) -> None:
    """Even a bad command-line value is a JSON error line and a JSON summary with exit 2."""
    job = write_job(tmp_path, "http://127.0.0.1:9")
    result = invoke(["run", str(job), "--log-format", "json", "--max-requests", "0"], "t" * 12)
    assert result.exit_code == 2
    (error,) = json_lines(result.stderr)
    assert error["error"] == "UsageError" and "--max-requests" in str(error["message"])
    assert json_lines(result.stdout)[0]["status"] == "failed"


def test_json_stage_commands_print_json_results_and_refusals(tmp_path: Path) -> None:
    """In JSON mode a stage command prints its result as one object (stage, run id, exit code,
    counts), and a refused one (lock held) a failed summary with exit_code 4."""
    with emulator(days=1) as emu:
        job = write_job(tmp_path, emu.base_url)
        run_id = dry_run(job, emu.edit_token)
        plan = invoke(["plan", str(job), "--run", run_id, "--log-format", "json"], emu.edit_token)
        lock.acquire(tmp_path / "data", "nightly", "test-gateway", pid=os.getpid())
        load = invoke(["load", str(job), "--run", run_id, "--log-format", "json"], emu.edit_token)
    assert plan.exit_code == 0, plan.output
    (result,) = json_lines(plan.stdout)
    assert result["stage"] == "plan" and result["run_id"] == run_id and result["exit_code"] == 0
    assert all(isinstance(line, dict) for line in json_lines(plan.stderr))
    assert load.exit_code == 4
    (error,) = json_lines(load.stderr)
    assert error["error"] == "LockHeldError" and error["exit_code"] == 4
    (summary,) = json_lines(load.stdout)
    assert summary == {**summary, "status": "failed", "exit_code": 4, "run_id": run_id}


def test_a_refused_run_in_json_mode_prints_only_json(tmp_path: Path) -> None:
    """A run whose token lacks Edit, with --log-format json: every stdout and stderr line is a
    JSON object, the last stdout object says failed with exit code 3, and no token anywhere."""
    token = "read-only-token-7e6d5c4b"
    with emulator(days=1, tokens={token: "read"}) as emu:
        job = write_job(tmp_path, emu.base_url)
        args = ["run", str(job), "--window", str(D0.date()), "--log-format", "json"]
        result = invoke(args, token)
    assert result.exit_code == 3, result.output
    errors = [line for line in json_lines(result.stderr) if line["level"] == "error"]
    assert errors and errors[-1]["exit_code"] == 3
    summary = json_lines(result.stdout)[-1]
    assert summary["status"] == "failed" and summary["exit_code"] == 3
    assert token not in result.stdout + result.stderr
