"""`aigw-feedback apply`: analysts' labels onto logs of any age, now, without extracting a window."""

from __future__ import annotations

import math
from pathlib import Path

from click.testing import CliRunner, Result

from pipeline.cli import cli
from pipeline.state import history
from tests.runkit import TOKEN_ENV, admin, emulator, load, log_ids, patches_by_log, write_job


def invoke(args: list[str], token: str) -> Result:
    return CliRunner().invoke(cli, args, env={TOKEN_ENV: token})


def _sheet(path: Path, rows: dict[str, int]) -> Path:
    lines = ["log_id,feedback,reason", *(f"{i},{fb},analyst" for i, fb in rows.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_apply_writes_and_verifies_labels_on_old_logs_at_lookup_cost(tmp_path: Path) -> None:
    """120 labels on logs weeks old: 3 look-ups, 120 PATCHes, 3 read-backs; no window extracted,
    the analyst's file left where it was, the nightly watermark untouched."""
    ids = log_ids(days=4)[:120]
    with emulator(days=4) as emu:
        job_file = write_job(tmp_path, emu.base_url)
        sheet = _sheet(
            tmp_path / "review.csv", {i: (1 if n % 3 else -1) for n, i in enumerate(ids)}
        )
        result = invoke(["apply", str(job_file), str(sheet), "-q"], emu.edit_token)
        stats = admin(emu, "stats")
        patched = patches_by_log(emu)
    assert result.exit_code == 0, result.output
    assert "status ok" in result.stdout
    assert set(patched) <= set(ids) and set(patched.values()) == {1}
    changed = len(patched)  # the rest already carried that feedback: unchanged, no request
    assert f"{changed} to patch, {120 - changed} unchanged" in result.stdout
    assert stats["total_requests"] == 3 + changed + math.ceil(changed / 50), stats["requests"]
    job = load(job_file, "unused")
    assert sheet.exists()
    assert not (job.store.data_dir / "logs").exists()
    assert history.get_watermark(job.store.data_dir, job.name, job.gateway.gateway_id) is None
    (record,) = history.list_runs(job.store.data_dir)
    assert (record.mode, record.status) == ("apply", "ok")


def test_apply_with_an_empty_inbox_sends_nothing_and_exits_0(tmp_path: Path) -> None:
    """A trigger that fires with nothing to do costs no request and is not an error."""
    with emulator(days=1) as emu:
        job_file = write_job(tmp_path, emu.base_url)
        result = invoke(["apply", str(job_file), "-q"], emu.edit_token)
        stats = admin(emu, "stats")
    assert result.exit_code == 0, result.output
    assert "nothing_to_do" in result.stdout
    assert stats["total_requests"] == 0


def test_a_dry_run_plans_and_leaves_neither_writes_nor_copies(tmp_path: Path) -> None:
    """--dry-run: counts and what the look-ups cost (2 requests for 60 ids), no PATCH, and the
    file's copy is gone from the inbox."""
    ids = log_ids(days=2)[:60]
    with emulator(days=2) as emu:
        job_file = write_job(tmp_path, emu.base_url)
        sheet = _sheet(tmp_path / "review.csv", dict.fromkeys(ids, 1))
        result = invoke(["apply", str(job_file), str(sheet), "--dry-run", "-q"], emu.edit_token)
        patched = patches_by_log(emu)
    assert result.exit_code == 0, result.output
    assert "to patch" in result.stdout and "2 requests spent on look-ups" in result.stdout
    assert patched == {}
    inbox = load(job_file, "unused").labels.csv.inbox
    assert not inbox.exists() or not list(inbox.iterdir())


def test_a_file_that_does_not_exist_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    """Exit 2, the path in the message, nothing sent."""
    job_file = write_job(tmp_path, "http://127.0.0.1:9/client/v4")
    result = invoke(["apply", str(job_file), str(tmp_path / "nope.csv")], "tok-apply-0001")
    assert result.exit_code == 2
    assert "nope.csv" in result.output


def test_the_schedule_examples_call_commands_that_exist_on_job_files_that_exist() -> None:
    """Every `aigw-feedback <command> <job>` in jobs/schedule/ is a real command and job file."""
    import re

    root = Path(__file__).resolve().parents[1]
    calls = []
    for path in sorted((root / "jobs" / "schedule").iterdir()):
        text = path.read_text(encoding="utf-8")
        calls += re.findall(r"bin/aigw-feedback (\w+) (jobs/\S+\.toml)", text)
    assert ("apply", "jobs/nightly.toml") in calls and ("run", "jobs/nightly.toml") in calls
    for command, job in calls:
        assert command in cli.commands, command
        assert (root / job).is_file(), job


def test_a_workbooks_rejected_rows_reach_the_report_with_their_sheet(tmp_path: Path) -> None:
    """A bad row on the second sheet of an .xlsx: rejects.json and the report name file, sheet, row."""
    import json

    from openpyxl import Workbook

    ids = log_ids(days=1)[:3]
    book = Workbook()
    first = book.active
    assert first is not None
    first.title = "Monday"
    first.append(["log_id", "feedback"])
    first.append([ids[0], 1])
    second = book.create_sheet("Tuesday")
    second.append(["log_id", "feedback"])
    second.append([ids[1], "meh"])
    second.append([ids[2], -1])
    sheet = tmp_path / "week.xlsx"
    book.save(sheet)
    with emulator(days=1) as emu:
        job_file = write_job(tmp_path, emu.base_url)
        result = invoke(["apply", str(job_file), str(sheet), "-q"], emu.edit_token)
    assert result.exit_code == 0, result.output
    job = load(job_file, "unused")
    (folder,) = (job.store.data_dir / "runs").iterdir()
    rejects = json.loads((folder / "rejects.json").read_text())
    assert [(r["file"], r["sheet"], r["line"]) for r in rejects["rows"]] == [
        ("week.xlsx", "Tuesday", 2)
    ]
    assert "week.xlsx · sheet Tuesday" in (folder / "report.html").read_text()
