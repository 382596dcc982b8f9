"""`aigw-feedback report RUN_ID`: a pure re-render of a real run folder, through the CLI, over HTTP.

The runs are real (the emulator over HTTP, the CLI's `run`); the report is then rendered from the run
folder alone: with the inbox gone, on a read-only data dir, without changing or creating a file.
"""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from pipeline.cli import cli
from pipeline.state.store import write_json_atomic
from tests.runkit import D0, TOKEN_ENV, emulator, log_ids, write_job

BINARY = b"\x00\x01\x02 not a csv"


def invoke(args: list[str], token: str | None = None) -> Result:
    env = {TOKEN_ENV: token} if token is not None else {}
    return CliRunner().invoke(cli, args, env=env)


def labeled_run(tmp_path: Path, *, read_only_token: bool = False) -> tuple[Path, str, Result]:
    """One real run of day 0 with an analyst's CSV (5 good rows, 2 bad ones) and a binary file in
    the inbox. Returns the data dir, the run id and the `run` command's result."""
    ids = log_ids(days=1)
    with emulator(days=1) as emu:
        job = write_job(tmp_path, emu.base_url)
        inbox = tmp_path / "data" / "inbox"
        inbox.mkdir(parents=True)
        good = "\n".join(f"{i},-1,analyst" for i in ids[:5])
        (inbox / "a.csv").write_text(
            f"log_id,feedback,reason\n{good}\n{ids[5]},meh,bad value\n,1,no id\n", encoding="utf-8"
        )
        (inbox / "b.csv").write_bytes(BINARY)
        token = emu.read_token if read_only_token else emu.edit_token
        result = invoke(["run", str(job), "--window", str(D0.date()), "-q"], token)
    (run_id,) = [p.name for p in (tmp_path / "data" / "runs").iterdir()]
    return tmp_path / "data", run_id, result


def snapshot(root: Path) -> dict[str, tuple[float, str]]:
    """Every file under root: its mtime and a hash of its content."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[list[Path]]:
    """Folders made read-only by the test (chmod -R a-w), writable again afterwards."""
    folders: list[Path] = []
    yield folders
    for folder in folders:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def make_read_only(folder: Path, folders: list[Path]) -> None:
    folders.append(folder)
    for path in [*folder.rglob("*"), folder]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def test_report_re_renders_from_the_run_folder_alone_and_changes_nothing(
    tmp_path: Path, read_only: list[Path]
) -> None:
    """With the inbox gone and the data dir read-only, `report` shows the rejected rows with file,
    line and reason, names the unreadable file in the headline, and changes or creates no file."""
    data_dir, run_id, ran = labeled_run(tmp_path)
    assert ran.exit_code == 0, ran.output
    for path in sorted((data_dir / "inbox").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()  # the report must not need the inbox
    (data_dir / "inbox").rmdir()
    make_read_only(data_dir, read_only)
    before = snapshot(data_dir)

    md = invoke(["report", run_id, "--data-dir", str(data_dir)])
    as_json = invoke(["report", run_id, "--format", "json", "--data-dir", str(data_dir)])
    html = invoke(["report", run_id, "--format", "html", "--data-dir", str(data_dir)])

    assert snapshot(data_dir) == before
    assert (md.exit_code, as_json.exit_code, html.exit_code) == (0, 0, 0), md.output
    data = json.loads(as_json.stdout)
    assert data["status"] == "ok"
    assert data["problems"][0].startswith("inbox file b.csv could not be read: ")
    assert "binary" in data["problems"][0]
    assert "b.csv could not be read" in md.stdout.split("## What changed")[0]  # the headline
    rejected = md.stdout.split("## Rejected rows (2)")[1]
    assert "| a.csv | 7 | feedback " in rejected
    assert "| a.csv | 8 | no log id" in rejected
    assert html.stdout.strip() == str(data_dir / "runs" / run_id / "report.html")


def test_report_out_writes_the_three_files_elsewhere(tmp_path: Path, read_only: list[Path]) -> None:
    """`--out DIR` writes report.json/.md/.html there (the run folder stays as it was); `--out -`
    prints the chosen format, HTML included."""
    data_dir, run_id, _ = labeled_run(tmp_path)
    make_read_only(data_dir, read_only)
    before = snapshot(data_dir)
    out = tmp_path / "out"
    written = invoke(["report", run_id, "--out", str(out), "--data-dir", str(data_dir)])
    page = invoke(["report", run_id, "--format", "html", "--out", "-", "--data-dir", str(data_dir)])
    assert written.exit_code == 0, written.output
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md"]
    assert str(out / "report.html") in written.stdout
    assert json.loads((out / "report.json").read_text())["run_id"] == run_id
    assert page.exit_code == 0 and page.stdout.startswith("<!doctype html>")
    assert page.stdout == (out / "report.html").read_text()
    assert snapshot(data_dir) == before


def test_report_of_a_refused_token_says_why_and_writes_nothing_as_if(tmp_path: Path) -> None:
    """A run with a read-only token: the report's first problem is the 403 with the token hint, the
    budget share is small, and the feedback 'after' column equals 'before'."""
    data_dir, run_id, ran = labeled_run(tmp_path, read_only_token=True)
    assert ran.exit_code == 3
    run_dir = data_dir / "runs" / run_id
    message = ran.stderr.strip().removeprefix("error: ")
    error = {"kind": "auth", "stage": "load", "message": message, "exit_code": 3}
    requests = sum(
        json.loads((run_dir / f"{s}.result.json").read_text())[k]
        for s, k in (("extract", "requests"), ("load", "requests"))
    )
    # What run.py writes at the end of every invocation (its side of the contract).
    write_json_atomic(
        {"error": error, "stopped": None, "requests": requests, "seconds": 1.5, "attempts": 1},
        run_dir / "outcome.json",
    )
    result = invoke(["report", run_id, "--format", "json", "--data-dir", str(data_dir)])
    data = json.loads(result.stdout)
    assert result.exit_code == 1  # the report exists; the run it shows did not succeed
    assert (data["status"], data["exit_code"]) == ("failed", 3)
    assert "AI Gateway Edit" in data["problems"][0]
    assert data["requests"]["utilisation"] < 0.05
    md = invoke(["report", run_id, "--data-dir", str(data_dir)]).stdout
    feedback = md.split("## Feedback on the labeled logs")[1].split("\n#")[0]
    rows = [line.split("|")[1:-1] for line in feedback.splitlines() if line.startswith("| ")][1:]
    assert rows and all(before.strip() == after.strip() for _, before, _, after in rows)


def test_report_of_an_unknown_run_is_a_usage_error_and_creates_nothing(tmp_path: Path) -> None:
    """An unknown run id exits 2 with how to list runs, and creates no data dir."""
    missing = tmp_path / "nowhere"
    result = invoke(["report", "20261102T011500Z-nightly-0000", "--data-dir", str(missing)])
    assert result.exit_code == 2, result.output
    assert "aigw-feedback runs" in result.stderr
    assert list(tmp_path.iterdir()) == []  # no data dir, no runs/ folder
    missing.mkdir()
    again = invoke(["report", "20261102T011500Z-nightly-0000", "--data-dir", str(missing)])
    assert again.exit_code == 2
    assert list(missing.iterdir()) == []


def test_report_of_a_dry_run_says_dry_run_and_exits_0(tmp_path: Path) -> None:
    """A dry run's plan re-rendered with `report` is a dry run, not "partial: load did not run"."""
    with emulator(days=1) as emu:
        job = write_job(tmp_path, emu.base_url)
        dry = invoke(
            ["run", str(job), "--window", str(D0.date()), "--dry-run", "-q"], emu.edit_token
        )
    assert dry.exit_code == 0, dry.output
    (run_dir,) = (tmp_path / "data" / "runs").iterdir()
    shown = invoke(
        ["report", run_dir.name, "--format", "json", "--data-dir", str(tmp_path / "data")]
    )
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    assert data["status"] == "dry_run"
    assert data["problems"] == []
