"""Report: the numbers a person reads add up, the status is honest, and hostile strings stay text."""

from __future__ import annotations

import dataclasses
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from loadkit import make_job, make_run, write_plan

from pipeline.config import JobConfig
from pipeline.extract import ExtractResult
from pipeline.label import LabelResult
from pipeline.load import LoadResult
from pipeline.plan import PlanResult
from pipeline.report import assemble, build_report, exit_code_for, report
from pipeline.report.html import render_value, stage_svg
from pipeline.report.inputs import read_stages
from pipeline.result import StageResult
from pipeline.run_result import Stages
from pipeline.state import store
from pipeline.state.store import RunInfo
from pipeline.verify import VerifyResult

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'

RESULT_TYPES: dict[str, type[StageResult]] = {
    "extract": ExtractResult,
    "label": LabelResult,
    "plan": PlanResult,
    "load": LoadResult,
    "verify": VerifyResult,
}
# What a test does not set: zeros (and a budget of 3.6/s, the default), so each file is complete.
UNSET: dict[str, dict[str, Any]] = {
    "extract": {"logs": 0, "requests": 0, "partitions": [], "days": [], "seconds": 0.0,
                "total_count": 0, "complete": True},
    "label": {"window_logs": 0, "total": 0, "in_window": 0, "outside_window": 0, "conflicts": 0,
              "by_source": {}, "chosen_by_kind": {}, "csv": {}, "rules": {}, "external": None,
              "requests": 0},
    "plan": {"labels": 0, "patch": 0, "unchanged": 0, "keep_existing": 0, "not_found": 0,
             "stamp_skipped": 0, "from_extract": 0, "looked_up": 0, "lookup_requests": 0,
             "load_requests": 0, "verify_requests": 0, "requests_needed": 0,
             "rate_per_second": 3.6, "estimated_seconds": 0.0, "started_at": "",
             "finished_at": "", "seconds": 0.0},
    "load": {"total": 0, "patched": 0, "failed": 0, "gone": 0, "pending": 0, "requests": 0,
             "rate_limited": 0, "retries": 0, "seconds": 0.0, "budget_per_s": 3.6,
             "stopped_early": False, "stop_reason": None, "patched_now": 0, "skipped_done": 0,
             "invocations": 1, "started_at": "", "finished_at": ""},
    "verify": {"checked": 0, "verified": 0, "mismatched": 0, "unverifiable": 0, "requests": 0,
               "rechecks": 0, "seconds": 0.0, "started_at": "", "finished_at": ""},
}  # fmt: skip


def write_results(run: RunInfo, **results: dict[str, Any]) -> None:
    """Each stage's result file as the stage writes it: the numbers given, zeros for the rest."""
    for stage, data in results.items():
        cls = RESULT_TYPES[stage]
        assert dataclasses.is_dataclass(cls)
        assert set(data) <= {f.name for f in dataclasses.fields(cls)}, "a field the stage lacks"
        fields = {"run_id": run.run_id, "window": run.to_json()["window"], **UNSET[stage], **data}
        result = cls.from_json(fields)
        store.write_json_atomic(result.to_json(), run.paths.stage_result(stage))


def full_run(
    tmp_path: Path, *, failed: int = 0, mismatched: int = 0, **plan_kw: str
) -> tuple[JobConfig, RunInfo]:
    job = make_job(tmp_path)
    run = make_run(job)
    write_plan(run, {f"l{i}": {"feedback": 1 if i % 3 else -1} for i in range(10)}, **plan_kw)
    write_results(
        run,
        extract={"logs": 500, "requests": 11, "partitions": ["logs/2026-11-01"], "seconds": 3.0},
        label={
            "total": 12,
            "by_source": {"csv:a.csv": 4, "rule:slow": 8},
            "conflicts": 1,
            "csv": {"files": 1, "rows": 6, "accepted": 4, "rejected": 2},
            "requests": 0,
        },
        plan={
            "labels": 12,
            "patch": 10,
            "unchanged": 1,
            "keep_existing": 1,
            "not_found": 0,
            "lookup_requests": 0,
            "seconds": 0.1,
            "finished_at": "2026-11-02T01:00:00.000Z",
        },
        load={
            "total": 10,
            "patched": 10 - failed,
            "failed": failed,
            "gone": 0,
            "pending": 0,
            "requests": 10 + failed * 4,
            "rate_limited": 0,
            "retries": failed * 4,
            "seconds": 3.0,
            "budget_per_s": 3.6,
            "failures": [
                {"log_id": f"l{i}", "status": "failed", "http_status": 503, "error": HOSTILE}
                for i in range(failed)
            ],
            "timeline": [[1700000000, 4], [1700000001, 3], [1700000002, 3]],
            "finished_at": "2026-11-02T01:00:05.000Z",
        },
        verify={
            "checked": 10 - failed,
            "verified": 10 - failed - mismatched,
            "mismatched": mismatched,
            "unverifiable": 0,
            "requests": 1,
            "seconds": 0.2,
            "mismatches": [
                {"log_id": "l9", "status": "mismatched", "reason": "feedback sent 1 read -1"}
            ]
            if mismatched
            else [],
            "finished_at": "2026-11-02T01:00:06.000Z",
        },
    )
    return job, run


def test_report_json_has_the_design_keys_and_the_numbers_add_up(tmp_path: Path) -> None:
    """report.json carries every DESIGN key; an all-verified run is ok with exit code 0."""
    job, run = full_run(tmp_path)
    result = build_report(job, run)
    data = json.loads(run.paths.report("json").read_text())
    assert set(data) >= {
        "run_id", "job", "window", "status", "started_at", "finished_at", "extract", "labels",
        "plan", "load", "verify", "requests",
    }  # fmt: skip
    assert set(data["window"]) == {"start", "end"}
    assert set(data["extract"]) >= {"logs", "requests", "partitions"}
    assert set(data["labels"]) >= {"total", "by_source", "conflicts", "csv"}
    assert set(data["labels"]["csv"]) == {"files", "rows", "accepted", "rejected"}
    assert set(data["plan"]) >= {"patch", "unchanged", "keep_existing", "not_found"}
    assert set(data["load"]) >= {
        "patched", "failed", "gone", "requests", "rate_limited", "retries", "seconds",
    }  # fmt: skip
    assert set(data["verify"]) >= {"verified", "mismatched", "unverifiable", "requests"}
    assert set(data["requests"]) >= {"total", "budget_per_s", "utilisation"}
    assert data["requests"]["total"] == 11 + 0 + 0 + 10 + 1
    assert data["status"] == "ok" and result.exit_code == 0
    assert data["finished_at"] == "2026-11-02T01:00:06.000Z"
    md = run.paths.report("md").read_text()
    assert "✗" not in md
    assert "planned patches 10 = 10 patched + 0 failed + 0 gone + 0 pending" in md


def test_failures_make_the_run_partial_and_are_listed(tmp_path: Path) -> None:
    """Some failed or mismatched changes: status partial, exit code 1, each one listed with why."""
    job, run = full_run(tmp_path, failed=2, mismatched=1)
    result = build_report(job, run)
    assert (result.status, exit_code_for(result)) == ("partial", 1)
    assert "2 changes failed" in result.data["problems"]
    assert "1 changes read back different" in result.data["problems"]
    md = run.paths.report("md").read_text()
    assert "## Failures (3)" in md
    assert "feedback sent 1 read -1" in md


def test_missing_stages_are_shown_as_not_run(tmp_path: Path) -> None:
    """A run that never got to planning is `failed`, and the report says which stages did not run."""
    job = make_job(tmp_path)
    run = make_run(job)
    write_results(run, extract={"logs": 3, "requests": 1, "partitions": ["logs/2026-11-01"]})
    data = assemble(run, Stages(extract=read_stages(run).extract))
    assert data["status"] == "failed"
    assert data["not_run"] == ["label", "plan", "load", "verify"]
    assert data["verify"] == {
        "verified": None, "mismatched": None, "unverifiable": None, "requests": None, "ran": False,
    }  # fmt: skip
    result = report(run.run_id, job.store.data_dir)  # the CLI's path: no job file
    assert result.exit_code == 1
    assert "not run" in result.texts["md"]


def test_result_files_from_before_newer_fields_render_the_same(tmp_path: Path) -> None:
    """A run folder whose result files lack the fields added later renders as before: the fields'
    defaults apply, and no stage is shown as not run."""
    job, run = full_run(tmp_path)
    full = report(run.run_id, job.store.data_dir).texts["json"]
    added_later = {
        "extract": ("note", "reconcile_rounds", "ranges"),
        "label": ("errors", "paths", "seconds"),
        "plan": ("verify_enabled", "by_source"),
        "load": ("failures", "timeline"),
        "verify": ("mismatches", "gone"),
    }
    for stage, keys in added_later.items():
        path = run.paths.stage_result(stage)
        data = json.loads(path.read_text())
        store.write_json_atomic({k: v for k, v in data.items() if k not in keys}, path)
    older = report(run.run_id, job.store.data_dir)
    assert older.texts["json"] == full
    assert older.data["not_run"] == []


def test_a_result_file_with_a_renamed_field_is_not_read_as_zeros(tmp_path: Path) -> None:
    """A load result whose "patched" is called something else is not that stage's result: the
    report says load did not finish, instead of showing 0 patched."""
    job, run = full_run(tmp_path)
    path = run.paths.stage_result("load")
    data = json.loads(path.read_text())
    data["written"] = data.pop("patched")
    store.write_json_atomic(data, path)
    result = build_report(job, run)
    assert result.data["load"]["ran"] is False and result.data["load"]["patched"] is None
    assert "load" in result.data["not_run"]
    assert "10 planned changes were not loaded (load did not run)" in result.data["problems"]


def test_a_capped_load_is_partial_not_ok(tmp_path: Path) -> None:
    """A load stopped by --max-requests leaves the run partial until the rest is sent."""
    job, run = full_run(tmp_path)
    load = json.loads(run.paths.stage_result("load").read_text())
    load.update(patched=6, pending=4, stopped_early=True, stop_reason="request cap")
    store.write_json_atomic(load, run.paths.stage_result("load"))
    result = build_report(job, run)
    assert result.status == "partial"
    assert any("pending" in p for p in result.data["problems"])


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags.append(tag)
        self.attrs += [name for name, _ in attrs]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_report_escapes_hostile_strings_and_needs_no_network(tmp_path: Path) -> None:
    """Strings from logs, CSV files and the API show as text: no script or img tag gets in."""
    job, run = full_run(tmp_path, failed=1, provider=HOSTILE, model="gpt-<marquee>4</marquee>")
    store.write_json_atomic({"sources": {HOSTILE: {"labels": 3}}}, run.paths.label_analysis)
    rejected = {"file": "a.csv", "line": 3, "reason": "bad_feedback", "detail": HOSTILE,
                "cells": {"log_id": "x", "feedback": "meh"}}  # fmt: skip
    store.write_json_atomic({"rows": [rejected]}, run.paths.root / "rejects.json")

    build_report(job, run)
    page = run.paths.report("html").read_text()
    parser = _Collect()
    parser.feed(page)
    assert "script" not in parser.tags
    assert "img" not in parser.tags
    assert "marquee" not in parser.tags
    text = "".join(parser.text)
    assert (
        HOSTILE in text
    )  # shown, as text: in the model table, the analysis, the failures, rejects
    assert page.count("&lt;script&gt;") >= 4
    assert "gpt-&lt;marquee&gt;4&lt;/marquee&gt;" in page
    assert not {"src", "href", "onerror"} & set(parser.attrs)  # nothing loads, nothing runs
    assert "http://" not in page and "https://" not in page
    assert "<svg" in page
    assert "feedback: meh" in text  # the row's cells, as column: value


def test_markdown_report_shows_hostile_strings_as_text(tmp_path: Path) -> None:
    """In report.md, HTML, pipes, backticks and emphasis from logs and files are escaped: no tag
    gets through and no table grows a cell."""
    job, run = full_run(tmp_path, failed=1, provider=HOSTILE, model="gpt|`4`*x*")
    rejected = {"file": "a|b.csv", "line": 3, "reason": "bad_feedback", "detail": HOSTILE,
                "cells": {"log_id": "x"}}  # fmt: skip
    store.write_json_atomic({"rows": [rejected]}, run.paths.root / "rejects.json")
    build_report(job, run)
    md = run.paths.report("md").read_text()
    assert not re.search(r"(?<!\\)[<>]", md)  # every < and > is escaped: no tag starts
    assert md.count("\\<script\\>") >= 3  # the model table, the failure, the rejected row
    row = next(line for line in md.splitlines() if "gpt" in line)
    assert "gpt\\|\\`4\\`\\*x\\*" in row
    assert len(re.findall(r"(?<!\\)\|", row)) == 8  # seven cells, as in the header
    assert "| a\\|b.csv | 3 | \\<script\\>" in md


def test_render_value_turns_nested_maps_into_tables() -> None:
    """The label analysis (any shape) is shown as tables, escaped."""
    out = render_value({"rules": {"coverage": 0.5, "<x>": 1}, "csv": {"coverage": 0.1}})
    assert out.count("<table") == 1
    assert "&lt;x&gt;" in out


def test_timeline_shows_the_budget_line() -> None:
    """Requests over time are drawn against the budget (a dashed line), one bar per second with
    requests, with no script."""
    svg = stage_svg(9, 6.0, 3.6, [[100, 3], [101, 4], [105, 2]])
    assert svg.count('class="budget"') == 1
    assert svg.count("<rect") == 3
    assert "<script" not in svg


# ---------------------------------------------------------------------------------------------
# Honest status, cause first, true figures (issue 9)

REFUSED = (
    "PATCH logs/l0 was refused: Authentication error (HTTP 403, code 10000); "
    "the token needs AI Gateway Read, and AI Gateway Edit to write feedback"
)


def write_outcome(run: RunInfo, **fields: Any) -> None:
    """outcome.json as run.py writes it at the end of every invocation."""
    outcome: dict[str, Any] = {
        "error": None,
        "stopped": None,
        "started_at": "2026-11-02T01:00:00.000Z",
        "finished_at": "2026-11-02T01:00:09.000Z",
        "attempts": 1,
        **fields,
    }
    store.write_json_atomic(outcome, run.paths.root / "outcome.json")


def refused_run(tmp_path: Path, *, patched: int = 0) -> tuple[JobConfig, RunInfo]:
    """A run whose load was refused with a 403 after `patched` changes (no verify)."""
    job, run = full_run(tmp_path)
    load = json.loads(run.paths.stage_result("load").read_text())
    load.update(patched=patched, pending=10 - patched, requests=patched + 1, seconds=0.013)
    load.update(timeline=[[1700000000, patched + 1]])
    store.write_json_atomic(load, run.paths.stage_result("load"))
    run.paths.stage_result("verify").unlink()
    error = {"kind": "auth", "stage": "load", "message": REFUSED, "exit_code": 3}
    write_outcome(run, error=error, requests=13 + patched, seconds=4.0)
    return job, run


def feedback_table(md: str) -> dict[str, list[str]]:
    """The before / planned / after table of report.md, by feedback value."""
    part = md.split("## Feedback on the labeled logs", 1)[1].split("\n#", 1)[0]
    rows = [line.strip("|").split("|") for line in part.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def test_a_refused_token_is_the_first_problem_and_sets_the_exit_code(tmp_path: Path) -> None:
    """A 403 during load: failed, exit 3, and the token hint is the first thing every report says."""
    job, run = refused_run(tmp_path)
    result = build_report(job, run)
    assert (result.status, result.exit_code, exit_code_for(result)) == ("failed", 3, 3)
    first = result.data["problems"][0]
    assert "the token was refused" in first and "AI Gateway Edit" in first
    assert result.data["error"]["kind"] == "auth"
    md = run.paths.report("md").read_text()
    assert md.splitlines()[2].startswith("**Why:**") and "AI Gateway Edit" in md.splitlines()[2]
    page = run.paths.report("html").read_text()
    assert page.index("AI Gateway Edit") < page.index("logs extracted")  # above the numbers


def test_an_error_after_some_changes_landed_is_partial(tmp_path: Path) -> None:
    """An error after 6 of 10 changes were applied: partial (not failed), the error's exit code."""
    job, run = refused_run(tmp_path, patched=6)
    result = build_report(job, run)
    assert (result.status, result.exit_code) == ("partial", 3)
    assert "AI Gateway Edit" in result.data["problems"][0]
    assert "4 changes are still pending" in result.data["problems"]


def test_a_quiet_night_is_nothing_to_do_and_exits_0(tmp_path: Path) -> None:
    """No change planned and no error: `nothing_to_do`, exit 0, no problem, and the page says so."""
    job = make_job(tmp_path)
    run = make_run(job)
    write_plan(run, {}, l1="unchanged")
    write_results(
        run,
        extract={"logs": 0, "requests": 1, "partitions": [], "seconds": 0.1},
        label={"total": 1, "by_source": {}, "conflicts": 0, "csv": {}, "requests": 0},
        plan={"labels": 1, "patch": 0, "unchanged": 1, "keep_existing": 0, "not_found": 0},
    )
    write_outcome(run, requests=1, seconds=0.5)
    result = build_report(job, run)
    assert (result.status, result.exit_code, result.data["problems"]) == ("nothing_to_do", 0, [])
    assert "NOTHING TO DO" in run.paths.report("html").read_text()
    assert "Nothing to do" in run.paths.report("md").read_text()


def test_a_request_cap_reached_is_named_first_and_once(tmp_path: Path) -> None:
    """A run stopped by its request cap says so first, in the words run.py gave, only once."""
    job, run = full_run(tmp_path)
    load = json.loads(run.paths.stage_result("load").read_text())
    load.update(patched=6, pending=4, stopped_early=True, stop_reason="request cap reached")
    store.write_json_atomic(load, run.paths.stage_result("load"))
    run.paths.stage_result("verify").unlink()
    write_outcome(run, stopped="the request cap (--max-requests 100) was reached")
    result = build_report(job, run)
    problems = result.data["problems"]
    assert result.status == "partial" and result.exit_code == 1
    assert problems[0] == "the run stopped early: the request cap (--max-requests 100) was reached"
    assert not any("request cap reached" in p for p in problems)


def test_a_signal_is_named_first(tmp_path: Path) -> None:
    """A run stopped by SIGTERM says so in plain words before the counts."""
    job, run = full_run(tmp_path)
    write_outcome(run, stopped="stopped by SIGTERM")
    assert build_report(job, run).data["problems"][0] == "the run was stopped by SIGTERM"


def test_budget_share_is_requests_sent_over_the_time_spent(tmp_path: Path) -> None:
    """Utilisation uses the requests and seconds of the whole run (all attempts), from outcome.json."""
    job, run = full_run(tmp_path)  # budget 3.6/s, the default
    write_outcome(run, requests=2000, seconds=600.0, attempts=2)
    req = build_report(job, run).data["requests"]
    assert (req["total"], req["seconds"]) == (2000, 600.0)
    assert req["utilisation"] == round(2000 / (600.0 * 3.6), 4)


def test_a_short_refused_run_does_not_claim_thousands_of_percent(tmp_path: Path) -> None:
    """14 requests in 4 s are measured against one budget period (1080 per 5 min): about 1%."""
    job, run = refused_run(tmp_path)
    result = build_report(job, run)
    req = result.data["requests"]
    assert req["utilisation"] == round(13 / (3.6 * 300), 4)
    assert req["load_utilisation"] is not None and req["load_utilisation"] < 0.01
    page = run.paths.report("html").read_text()
    assert "<b>1%</b><span>budget used</span>" in page


def test_after_equals_before_when_nothing_was_written(tmp_path: Path) -> None:
    """A load that applied nothing: the feedback 'after' column is the 'before' column."""
    job, run = refused_run(tmp_path)
    build_report(job, run)
    table = feedback_table(run.paths.report("md").read_text())
    assert table  # before, planned, after
    assert all(before == after for before, _, after in table.values())
    assert table["+1 (good)"][1] != table["+1 (good)"][2]  # the plan wanted more than was written


def test_after_counts_only_the_changes_verify_read_back(tmp_path: Path) -> None:
    """6 of 10 changes applied and read back: 'after' counts those 6 and leaves the rest as before."""
    import pyarrow as pa

    from pipeline.verify import VERIFY_SCHEMA

    job, run = refused_run(tmp_path, patched=6)
    rows = [{"log_id": f"l{i}", "status": "verified", "checks": 1} for i in range(6)]
    full = [{**dict.fromkeys(VERIFY_SCHEMA.names), **r} for r in rows]
    store.write_parquet_atomic(pa.Table.from_pylist(full, schema=VERIFY_SCHEMA), run.paths.verify)
    build_report(job, run)
    table = feedback_table(run.paths.report("md").read_text())
    # l0..l9 had no feedback; l0, l3, l6, l9 are planned -1, the others +1; l0..l5 were written.
    assert table["+1 (good)"] == ["0", "6", "4"]
    assert table["-1 (bad)"] == ["0", "4", "2"]
    assert table["none"] == ["10", "0", "4"]


def test_after_is_unknown_when_a_partial_load_was_not_verified(tmp_path: Path) -> None:
    """6 of 10 applied, no read-back: 'after' is not guessed; a note says how to find out."""
    job, run = refused_run(tmp_path, patched=6)
    build_report(job, run)
    md = run.paths.report("md").read_text()
    assert all(after == "–" for *_, after in feedback_table(md).values())
    assert "6 of 10 planned changes were applied" in md


def test_rejected_rows_come_from_the_run_folder(tmp_path: Path) -> None:
    """The rejected-rows table shows file, line and reason from rejects.json, with no inbox anywhere."""
    job, run = full_run(tmp_path)
    rows = [{"file": "a.csv", "line": 7, "reason": "bad_feedback", "detail": "'meh' is not -1/1",
             "cells": {"log_id": "x", "feedback": "meh"}}]  # fmt: skip
    store.write_json_atomic(
        {"version": 1, "files": [], "rows": rows}, run.paths.root / "rejects.json"
    )
    result = report(run.run_id, job.store.data_dir)
    assert "| a.csv | 7 | 'meh' is not -1/1 |" in result.texts["md"]
    assert "feedback: meh" in result.texts["html"]


def test_an_error_of_an_unknown_kind_still_comes_first_with_its_message(tmp_path: Path) -> None:
    """An outcome.json error of a kind this report does not know is shown first, in its words."""
    job, run = refused_run(tmp_path)
    error = {"kind": "cosmic_ray", "stage": "plan", "message": "a bit flipped", "exit_code": 1}
    write_outcome(run, error=error)
    result = build_report(job, run)
    assert result.data["problems"][0] == "an error during plan: a bit flipped"
    assert (result.status, result.exit_code) == ("failed", 1)


def test_a_damaged_plan_or_verify_file_does_not_stop_the_report(tmp_path: Path) -> None:
    """A truncated plan.parquet or verify.parquet: the report still renders and names the file."""
    job, run = full_run(tmp_path)
    for path in (run.paths.plan, run.paths.verify):
        path.write_bytes(b"PAR1 truncated")
    result = build_report(job, run)
    assert result.status == "ok"
    assert any("plan.parquet cannot be read" in p for p in result.data["problems"])
    assert "plan.parquet cannot be read" in run.paths.report("html").read_text()
