"""The nights that are not happy, driven through the CLI against the emulator over real HTTP.

One test per scenario a scheduled job meets: quiet nights, crashes, refused tokens, caps, an API
that is not there, damaged files, signals, a day run twice. Each asserts what an operator sees:
the exit code, the run's status, the first problem in report.json, the watermark, and that every
accepted label ends up written.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.emulator import RunningEmulator
from pipeline.state import history, lock
from tests.runkit import (
    D0,
    DAY,
    TOKEN_ENV,
    drop_csv,
    emulator,
    load,
    log_ids,
    patches_by_log,
    write_job,
)

NO_RULES_EXTRA = ""


@dataclass
class Outcome:
    """What one CLI invocation left behind."""

    exit_code: int
    stdout: str
    stderr: str
    data_dir: Path
    run_id: str | None  # the newest run when the invocation ended
    report_text: str | None = None  # its report.json then (a later resume rewrites the file)

    @property
    def runs(self) -> list[history.RunRecord]:
        return history.list_runs(self.data_dir, limit=None)

    @property
    def report(self) -> dict[str, Any]:
        """report.json of the newest run, as it was when the invocation ended."""
        assert self.report_text is not None, f"no report.json for run {self.run_id}"
        data: dict[str, Any] = json.loads(self.report_text)
        return data

    def watermark(self, job: str = "nightly", gateway: str = "test-gateway") -> datetime | None:
        return history.get_watermark(self.data_dir, job, gateway)


def cli_run(tmp_path: Path, args: list[str], token: str | None) -> Outcome:
    env = {TOKEN_ENV: token} if token is not None else {}
    result = CliRunner().invoke(cli, args, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    data_dir = tmp_path / "data"
    newest = history.list_runs(data_dir, limit=1) if (data_dir / "state.sqlite").exists() else []
    run_id = newest[0].run_id if newest else None
    return Outcome(
        result.exit_code,
        result.stdout,
        result.stderr,
        data_dir,
        run_id,
        _report_text(data_dir, run_id),
    )


def _report_text(data_dir: Path, run_id: str | None) -> str | None:
    path = data_dir / "runs" / str(run_id) / "report.json"
    return path.read_text(encoding="utf-8") if run_id and path.exists() else None


def nightly_at(day: int) -> list[str]:
    """The clock of the process is real; a nightly window is pinned with --window instead."""
    return ["--window", str((D0 + day * DAY).date())]


def job_without_rules(tmp_path: Path, emu: RunningEmulator, **kwargs: Any) -> Path:
    """A job whose rules match nothing: the CSV inbox is its only source of labels."""
    path = write_job(tmp_path, emu.base_url, **kwargs)
    text = path.read_text(encoding="utf-8")
    text = text.replace('when = "status_code >= 500"', 'when = "status_code >= 900"')
    text = text.replace('when = "success"', 'when = "success AND duration < 0"')
    path.write_text(text, encoding="utf-8")
    return path


# -- quiet nights ---------------------------------------------------------------------------------


def test_an_empty_window_is_nothing_to_do_and_exits_0(tmp_path: Path) -> None:
    """A day with no logs at all ends `nothing_to_do`, exit 0, with a report and no problem."""
    with emulator(days=1) as emu:
        job = write_job(tmp_path, emu.base_url)
        out = cli_run(tmp_path, ["run", str(job), *nightly_at(3), "-q"], emu.edit_token)
    assert out.exit_code == 0, out.stderr
    assert out.runs[0].status == "nothing_to_do"
    assert out.report["status"] == "nothing_to_do"
    assert out.report["problems"] == []
    assert "nothing to do" in out.stdout


def test_a_quiet_nightly_run_advances_the_watermark(tmp_path: Path) -> None:
    """The plain nightly command on a night without logs: exit 0, and the watermark moves on."""
    with emulator(days=1) as emu:  # logs only on 2026-11-10; yesterday is empty
        job = write_job(tmp_path, emu.base_url)
        out = cli_run(tmp_path, ["run", str(job), "-q"], emu.edit_token)
    assert out.exit_code == 0, out.stderr
    assert out.runs[0].status == "nothing_to_do"
    assert out.watermark() == out.runs[0].window.end


def test_rules_that_match_nothing_are_a_quiet_night(tmp_path: Path) -> None:
    """Logs but no labels (rules match nothing, empty inbox): exit 0, `nothing_to_do`."""
    with emulator(days=1) as emu:
        job = job_without_rules(tmp_path, emu)
        out = cli_run(tmp_path, ["run", str(job), *nightly_at(0), "-q"], emu.edit_token)
        sent = patches_by_log(emu)
    assert out.exit_code == 0, out.stderr
    assert out.report["status"] == "nothing_to_do"
    assert out.report["extract"]["logs"] > 0
    assert sent == {}


def test_a_second_run_of_a_labeled_day_changes_nothing_and_exits_0(tmp_path: Path) -> None:
    """Run a day twice: the second run finds every label already there and sends no PATCH."""
    with emulator(days=1) as emu:
        job = write_job(tmp_path, emu.base_url)
        first = cli_run(tmp_path, ["run", str(job), *nightly_at(0), "-q"], emu.edit_token)
        sent = sum(patches_by_log(emu).values())
        second = cli_run(tmp_path, ["run", str(job), *nightly_at(0), "-q"], emu.edit_token)
        sent_again = sum(patches_by_log(emu).values())
    assert first.exit_code == 0 and second.exit_code == 0, second.stderr
    assert sent > 0 and sent_again == sent
    assert second.report["status"] == "nothing_to_do"
    assert second.report["plan"]["unchanged"] == first.report["plan"]["patch"]


def test_a_window_in_the_future_is_refused(tmp_path: Path) -> None:
    """A window that starts after the last complete moment is a usage error (exit 2), no run."""
    job = write_job(tmp_path, "http://127.0.0.1:9")
    out = cli_run(tmp_path, ["run", str(job), "--window", "2999-01-01", "-q"], "some-token")
    assert out.exit_code == 2
    assert "future" in out.stderr
    assert not (tmp_path / "data" / "runs").exists()


# -- precedence across runs -----------------------------------------------------------------------


def test_a_day_run_twice_keeps_the_analysts_labels_against_rules(tmp_path: Path) -> None:
    """First run: an analyst labels logs +1 by CSV. Second run of the same day, the CSV already
    processed: a rule labeling those logs does not add to or replace the analyst's word."""
    with emulator(days=1) as emu:
        path = write_job(tmp_path, emu.base_url)
        # A rule that agrees on the feedback of every log of the day and adds a score of its own.
        text = (
            path.read_text(encoding="utf-8")
            .replace('when = "status_code >= 500"', 'when = "true"')
            .replace("feedback = -1\n", "feedback = 1\nscore = 40\n")
        )
        path.write_text(text, encoding="utf-8")
        job = load(path, emu.edit_token)
        analysed = log_ids(days=1)[:12]
        drop_csv(job, "review.csv", dict.fromkeys(analysed, 1))
        first = cli_run(tmp_path, ["run", str(path), *nightly_at(0), "-q"], emu.edit_token)
        second = cli_run(tmp_path, ["run", str(path), *nightly_at(0), "-q"], emu.edit_token)
        feedback = {i: emu.store.get(emu.account_id, emu.gateway_id, i) for i in analysed}
    assert first.exit_code == 0 and second.exit_code == 0, second.stderr
    assert {log["feedback"] for log in feedback.values()} == {1}
    # Nor does a rule add its score to them: the analyst's label is taken whole.
    assert {log.get("score") for log in feedback.values()} == {None}
    assert second.report["plan"]["keep_existing"] >= len(analysed)


# -- damaged files --------------------------------------------------------------------------------


def _capped_then(tmp_path: Path, emu: RunningEmulator, damage: Any) -> tuple[Outcome, Outcome]:
    """A run capped midway (labels planned, some written), its folder damaged, then the plain
    nightly command again."""
    job = write_job(tmp_path, emu.base_url)
    first = cli_run(
        tmp_path, ["run", str(job), *nightly_at(0), "--max-requests", "10", "-q"], emu.edit_token
    )
    assert first.exit_code == 1 and first.run_id is not None, first.stderr
    damage(tmp_path / "data", first.run_id)
    again = cli_run(tmp_path, ["run", str(job), *nightly_at(0)], emu.edit_token)
    return first, again


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "damaged",
    ["plan.parquet", "chosen.parquet", "run.json"],
)
def test_a_damaged_run_file_is_rebuilt_and_every_label_lands(tmp_path: Path, damaged: str) -> None:
    """A truncated plan or chosen labels, or a garbled run.json, in an unfinished run: the next
    run rebuilds it, finishes the run, and every planned change is written exactly once."""

    def damage(data_dir: Path, run_id: str) -> None:
        path = data_dir / "runs" / run_id / damaged
        if damaged == "run.json":
            path.write_text("{ this is not json", encoding="utf-8")
        else:
            _truncate(path)

    with emulator(days=1) as emu:
        first, again = _capped_then(tmp_path, emu, damage)
        sent = patches_by_log(emu)
        finished = history.get_run(again.data_dir, first.run_id or "")
    assert again.exit_code == 0, again.stderr
    assert finished is not None and finished.status == "ok"
    assert sent and max(sent.values()) == 1


def test_a_damaged_state_database_is_set_aside_and_nothing_is_resent(tmp_path: Path) -> None:
    """A truncated state.sqlite: the next run renames it aside (never deletes it), rebuilds the
    run history from the run folders, finishes the unfinished run, and sends no PATCH twice."""

    def damage(data_dir: Path, _run_id: str) -> None:
        for extra in ("state.sqlite-wal", "state.sqlite-shm"):
            (data_dir / extra).unlink(missing_ok=True)
        (data_dir / "state.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)

    with emulator(days=1) as emu:
        first, again = _capped_then(tmp_path, emu, damage)
        sent = patches_by_log(emu)
    assert again.exit_code == 0, again.stderr
    assert list((tmp_path / "data").glob("state.sqlite.damaged-*"))
    assert "set aside" in again.stderr
    finished = history.get_run(again.data_dir, first.run_id or "")
    assert finished is not None and finished.status == "ok"
    assert sent and max(sent.values()) == 1


# -- refused, capped, unreachable, unknown ------------------------------------------------------


def test_a_read_only_token_fails_with_the_token_hint_first(tmp_path: Path) -> None:
    """A token without Edit: exit 3, status failed, the 403 and what to do first in problems,
    nothing counted as written, and the watermark does not move."""
    with emulator(days=1) as emu:
        job = write_job(tmp_path, emu.base_url)
        out = cli_run(tmp_path, ["run", str(job), *nightly_at(0), "-q"], emu.read_token)
    assert out.exit_code == 3
    assert "Edit" in out.stderr
    report = out.report
    assert report["status"] == "failed"
    assert "Edit" in report["problems"][0]
    assert report["load"]["patched"] in (0, None)
    assert out.runs[0].status == "failed"
    utilisation = report["requests"]["utilisation"]
    assert utilisation is None or utilisation <= 1.5


def test_a_request_cap_is_partial_with_the_cap_first(tmp_path: Path) -> None:
    """--max-requests reached: exit 1, partial, the cap named first; run again and it finishes."""
    with emulator(days=1) as emu:
        job = write_job(tmp_path, emu.base_url)
        args = ["run", str(job), *nightly_at(0), "-q"]
        capped = cli_run(tmp_path, [*args, "--max-requests", "12"], emu.edit_token)
        again = cli_run(tmp_path, args, emu.edit_token)
        sent = patches_by_log(emu)
    assert capped.exit_code == 1
    assert capped.report["status"] == "partial"
    assert "cap" in capped.report["problems"][0]
    assert again.exit_code == 0, again.stderr
    assert history.get_run(again.data_dir, capped.run_id or "").status == "ok"  # type: ignore[union-attr]
    assert sent and max(sent.values()) == 1


@pytest.mark.slow  # the client's real retry back-off before it gives up: about 9 s
def test_an_unreachable_api_fails_saying_so(tmp_path: Path) -> None:
    """Nothing listens at the base URL: exit 1, status failed, and the report says the API could
    not be reached (not 'no plan')."""
    job = write_job(tmp_path, "http://127.0.0.1:9/client/v4")
    text = job.read_text(encoding="utf-8") + "\n"
    job.write_text(text, encoding="utf-8")
    out = cli_run(tmp_path, ["run", str(job), *nightly_at(0), "-q"], "a-token-of-sorts")
    assert out.exit_code == 1
    assert out.report["status"] == "failed"
    assert "reach" in out.report["problems"][0].lower()
    assert out.runs[0].status == "failed"


def test_an_unknown_gateway_is_a_configuration_error(tmp_path: Path) -> None:
    """A gateway id the account does not have: exit 2 naming the gateway and the keys to check."""
    with emulator(days=1) as emu:
        job = write_job(tmp_path, emu.base_url, gateway_id="no-such-gateway")
        out = cli_run(tmp_path, ["run", str(job), *nightly_at(0), "-q"], emu.edit_token)
    assert out.exit_code == 2
    assert "no-such-gateway" in out.stderr and "gateway_id" in out.stderr
    assert out.report["status"] == "failed"
    assert "no-such-gateway" in out.report["problems"][0]


# -- signals and crashes (real processes) ---------------------------------------------------------


def _spawn(path: Path, token: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, TOKEN_ENV: token}
    command = [sys.executable, "-m", "pipeline", "run", str(path), *args]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _done_rows(data_dir: Path) -> int:
    state = data_dir / "state.sqlite"
    if not state.exists():
        return 0
    try:
        with sqlite3.connect(state, timeout=5) as db:
            row = db.execute("SELECT count(*) FROM load_journal WHERE status = 'done'").fetchone()
    except sqlite3.OperationalError:  # the journal is not there yet
        return 0
    return int(row[0])


def _analyst_csv(path: Path, emu: RunningEmulator, n: int) -> list[str]:
    """An analyst's CSV in the job's inbox labeling the day's first n logs -1."""
    ids = log_ids(logs_per_day=300, days=1)[:n]
    drop_csv(load(path, emu.edit_token), "review.csv", dict.fromkeys(ids, -1))
    return ids


@pytest.mark.slow
def test_sigterm_mid_load_stops_gracefully_and_the_next_run_finishes(tmp_path: Path) -> None:
    """SIGTERM during the load: the process ends within seconds with exit 1, the report names the
    signal first, the lock is released and the run is partial; the same command again writes every
    analyst label, none twice."""
    with emulator(logs_per_day=300, days=1, latency_ms=15) as emu:
        path = write_job(tmp_path, emu.base_url)
        analysed = _analyst_csv(path, emu, 150)
        data_dir = tmp_path / "data"
        proc = _spawn(path, emu.edit_token, *nightly_at(0), "-q")
        deadline = time.monotonic() + 60
        while _done_rows(data_dir) < 30:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the load never got going"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
        run_id = history.list_runs(data_dir)[0].run_id
        stopped = Outcome(
            proc.returncode, _out, err, data_dir, run_id, _report_text(data_dir, run_id)
        )
        assert stopped.exit_code == 1, err
        assert stopped.runs[0].status == "partial"
        assert "SIGTERM" in stopped.report["problems"][0]
        assert lock.current_holder(data_dir, "nightly", "test-gateway") is None

        again = cli_run(tmp_path, ["run", str(path), *nightly_at(0), "-q"], emu.edit_token)
        sent = patches_by_log(emu)
        written = {i: emu.store.get(emu.account_id, emu.gateway_id, i) for i in analysed}
    assert again.exit_code == 0, again.stderr
    assert {log["feedback"] for log in written.values()} == {-1}
    assert max(sent.values()) <= 2 and sum(n > 1 for n in sent.values()) <= 4


@pytest.mark.slow
def test_sigkill_at_random_instants_then_the_plain_command_loses_nothing(tmp_path: Path) -> None:
    """Ten tries: the run is killed (SIGKILL) at a random instant inside extract, label, load or
    verify (in turn), then the same plain command runs again. Every accepted analyst label ends
    written and verified, no log gets more PATCHes than the kill forces (one in flight per
    worker), and no run is left `running` or `interrupted`."""
    rng = random.Random(20261201)
    stages = ("extract", "label", "load", "verify")
    figures = []
    for attempt in range(10):
        target = stages[attempt % len(stages)]
        base = tmp_path / f"try{attempt}"
        base.mkdir()
        with emulator(logs_per_day=300, days=1, latency_ms=10) as emu:
            path = write_job(base, emu.base_url)
            analysed = _analyst_csv(path, emu, 120)
            proc = _spawn(path, emu.edit_token, *nightly_at(0), "-q")
            killed_in = _kill_inside(proc, base / "data", target, rng)
            again = cli_run(base, ["run", str(path), *nightly_at(0), "-q"], emu.edit_token)
            sent = patches_by_log(emu)
            written = {i: emu.store.get(emu.account_id, emu.gateway_id, i) for i in analysed}
        where = (attempt, target, killed_in)
        assert again.exit_code == 0, (where, again.stderr)
        assert {log["feedback"] for log in written.values()} == {-1}, where
        assert max(sent.values()) <= 2, where
        assert sum(n > 1 for n in sent.values()) <= 4, where
        assert all(r.status in history.SUCCEEDED for r in again.runs), [
            (r.run_id, r.status) for r in again.runs
        ]
        verified = [
            json.loads((base / "data" / "runs" / r.run_id / "report.json").read_text())
            for r in again.runs
        ]
        assert sum(v["verify"]["verified"] or 0 for v in verified) >= len(analysed), where
        figures.append((target, killed_in, len(analysed), sum(sent.values()), max(sent.values())))
    print("\nSIGKILL tries (target, killed in, analyst labels, PATCHes, max per log):", figures)


def _kill_inside(
    proc: subprocess.Popen[str], data_dir: Path, target: str, rng: random.Random
) -> str:
    """SIGKILL `proc` at a random instant once it is inside `target`; returns where it was."""
    threshold = rng.randint(5, 150)
    delay = rng.uniform(0.0, 0.03)

    def inside() -> bool:
        folders = sorted((data_dir / "runs").glob("*")) if (data_dir / "runs").exists() else []
        if not folders:
            return False
        run = folders[-1]
        if target == "extract":
            return True
        if target == "label":
            return (run / "extract.result.json").exists()
        done = _done_rows(data_dir)
        if target == "load":
            return done >= threshold
        plan = run / "plan.result.json"
        return plan.exists() and done >= json.loads(plan.read_text())["patch"]

    deadline = time.monotonic() + 60
    while proc.poll() is None and not inside():
        assert time.monotonic() < deadline, f"the run never reached {target}"
        time.sleep(0.002)
    time.sleep(delay)
    if proc.poll() is not None:
        proc.communicate()
        return "finished"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return _stage_reached(data_dir)


def _stage_reached(data_dir: Path) -> str:
    """Which stage a killed run was in, from the stage results its folder holds."""
    folders = sorted((data_dir / "runs").glob("*")) if (data_dir / "runs").exists() else []
    if not folders:
        return "start"
    done = [s for s in ("extract", "label", "plan", "load", "verify")
            if (folders[-1] / f"{s}.result.json").exists()]  # fmt: skip
    following = {"": "extract", "extract": "label", "label": "plan", "plan": "load"}
    last = done[-1] if done else ""
    return "finished" if "verify" in done else following.get(last, "verify")


# -- the inbox --------------------------------------------------------------------------------------


def test_inbox_files_that_are_not_read_are_named_in_the_summary_and_the_report(
    tmp_path: Path,
) -> None:
    """A binary file, an empty one, one without a header and a spreadsheet in the inbox: the good
    CSV still counts, and each of the others is named with its reason in the summary and first
    in the report's problems."""
    with emulator(days=1) as emu:
        path = write_job(tmp_path, emu.base_url)
        job = load(path, emu.edit_token)
        drop_csv(job, "good.csv", dict.fromkeys(log_ids(days=1)[:3], 1))
        inbox = job.labels.csv.inbox
        (inbox / "binary.csv").write_bytes(b"\x00\x01\x02\xff" * 50)
        (inbox / "empty.csv").write_bytes(b"")
        (inbox / "noheader.csv").write_text("1,2,3\n4,5,6\n", encoding="utf-8")
        (inbox / "labels.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
        out = cli_run(tmp_path, ["run", str(path), *nightly_at(0)], emu.edit_token)
    assert out.exit_code == 0, out.stderr
    for name in ("binary.csv", "empty.csv", "noheader.csv", "labels.xlsx"):
        assert f"not read: {name}" in out.stdout, name
        assert any(name in p for p in out.report["problems"]), name
    assert out.report["labels"]["csv"]["accepted"] == 3
