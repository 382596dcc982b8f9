"""Report: the numbers a person reads add up, the status is honest, and hostile strings stay text."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from loadkit import make_job, make_run, write_plan

from pipeline import store
from pipeline.config import JobConfig
from pipeline.report import assemble, build_report, exit_code_for, report
from pipeline.report_render import render_value, timeline_svg
from pipeline.store import RunInfo

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def write_results(run: RunInfo, **results: dict[str, Any]) -> None:
    for stage, data in results.items():
        store.write_json_atomic({"run_id": run.run_id, **data}, run.paths.stage_result(stage))


def full_run(
    tmp_path: Path, *, failed: int = 0, mismatched: int = 0, **plan_kw: str
) -> tuple[JobConfig, RunInfo]:
    job = make_job(tmp_path)
    run = make_run(job)
    write_plan(run, {f"l{i}": {"feedback": 1 if i % 3 else -1} for i in range(10)}, **plan_kw)
    write_results(
        run,
        extract={"logs": 500, "requests": 11, "partitions": 1, "seconds": 3.0},
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
    write_results(run, extract={"logs": 3, "requests": 1, "partitions": 1})
    data = assemble(run, {"extract": json.loads(run.paths.stage_result("extract").read_text())})
    assert data["status"] == "failed"
    assert data["not_run"] == ["label", "plan", "load", "verify"]
    assert data["verify"] == {
        "verified": None, "mismatched": None, "unverifiable": None, "requests": None, "ran": False,
    }  # fmt: skip
    result = report(run.run_id, job.store.data_dir)  # the CLI's path: no job file
    assert result.exit_code == 1
    assert "not run" in run.paths.report("md").read_text()


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
    inbox = tmp_path / "inbox"
    processed = inbox / "processed" / run.run_id  # where the CSV labeler puts a run's files
    processed.mkdir(parents=True)
    (processed / "a.rejects.csv").write_text(
        f'reject_line;reject_reason;reject_detail;log_id;feedback\n3;bad_feedback;"{HOSTILE}";x;meh\n'
    )
    label = json.loads(run.paths.stage_result("label").read_text())
    label["csv"]["inbox"] = str(inbox)
    store.write_json_atomic(label, run.paths.stage_result("label"))

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
    assert "bad_feedback: " in text and '"feedback": "meh"' in text


def test_render_value_turns_nested_maps_into_tables() -> None:
    """The label analysis (any shape) is shown as tables, escaped."""
    out = render_value({"rules": {"coverage": 0.5, "<x>": 1}, "csv": {"coverage": 0.1}})
    assert out.count("<table") == 1
    assert "&lt;x&gt;" in out


def test_timeline_shows_the_budget_line() -> None:
    """Requests over time are drawn against the budget, with no script."""
    svg = timeline_svg([[100, 3], [101, 4], [105, 2]], 3.6)
    assert "budget 3.60/s" in svg
    assert svg.count("<rect") == 6
    assert "<script" not in svg
