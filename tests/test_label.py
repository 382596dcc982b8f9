"""The label stage: labelers combined by precedence, with an analysis whose numbers add up."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import StageError
from pipeline.label import CHOSEN_SCHEMA, choose, label
from pipeline.labelers.base import to_label_frame
from pipeline.schemas import LABEL_SCHEMA
from tests.examples import examples
from tests.labelkit import NOW, make_job, make_run, sample_logs, write_csv, write_logs

RULES = """
[[labels.rules]]
name = "errors"
when = "status_code >= 500"
feedback = -1
reason = "provider error"

[[labels.rules]]
name = "fast"
when = "success AND duration < 1500"
feedback = 1
score = 80

[[labels.rules]]
name = "everything"
when = "true"
score = 50
"""


def run_label(
    tmp_path: Path, extra: str = RULES, csv: str | Callable[[pl.DataFrame], str] | None = None
) -> dict[str, Any]:
    job = make_job(tmp_path, extra)
    logs = write_logs(job, sample_logs(300))
    if csv is not None:
        text = csv(logs) if callable(csv) else csv.format(*logs["id"].to_list())
        write_csv(job.labels.csv.inbox, "a.csv", text)
    run = make_run(job)
    result = asyncio.run(label(job, run, clock=lambda: NOW))
    return {
        "job": job,
        "run": run,
        "logs": logs,
        "result": result,
        "labels": pl.read_parquet(run.paths.labels),
        "chosen": pl.read_parquet(run.paths.chosen),
        "analysis": json.loads(run.paths.label_analysis.read_text()),
        "json": json.loads(run.paths.stage_result("label").read_text()),
    }


CSV = "log_id,feedback,score\n{0},down,\n{1},up,90\n{2},,20\nOLD-LOG-1,down,\n{3},meh,\n"


def test_label_stage_writes_its_files_and_result_keys(tmp_path: Path) -> None:
    """labels.parquet, chosen.parquet, the analysis and the result JSON, with the report's keys."""
    out = run_label(tmp_path, csv=CSV)
    data = out["json"]
    assert {"total", "by_source", "conflicts", "csv"} <= set(data)
    assert {"files", "rows", "accepted", "rejected"} <= set(data["csv"])
    assert (data["csv"]["files"], data["csv"]["rows"], data["csv"]["rejected"]) == (1, 5, 1)
    assert data["total"] == out["chosen"].height == out["logs"].height + 1  # + the old log
    assert pq.read_schema(out["run"].paths.labels).equals(LABEL_SCHEMA)
    assert pq.read_schema(out["run"].paths.chosen).equals(CHOSEN_SCHEMA)


def test_the_run_folder_keeps_no_scratch_file_of_the_rules(tmp_path: Path) -> None:
    """The rules' evaluated columns are a scratch file: gone when the stage ends, even if it fails."""
    out = run_label(tmp_path, csv=CSV)
    root = out["run"].paths.root
    assert not (root / "_rules.parquet").exists()
    assert out["labels"].filter(pl.col("source").str.starts_with("rule:")).height > 0

    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("pipeline.label.place", fail)
        with pytest.raises(RuntimeError):
            asyncio.run(label(out["job"], out["run"], clock=lambda: NOW))
    assert not (root / "_rules.parquet").exists()


def test_the_analysis_added_up_over_slices_of_the_window_is_the_whole_windows(
    tmp_path: Path,
) -> None:
    """The analysis summed slice by slice (memory bound) gives the numbers of one pass."""
    from pipeline.labelers.combine import combine

    out = run_label(tmp_path, csv=CSV)
    combined = combine(
        out["labels"], out["logs"]["id"], ("csv", "external", "rules"), ["errors", "fast"]
    )
    whole = combined.analysis(slice_rows=None)
    assert whole["chosen"] == out["logs"].height + 1 and whole["agreement"]["sources"]
    for rows in (1, 7, 299, 300):
        assert combined.analysis(slice_rows=rows) == whole


def test_the_chosen_rows_written_in_batches_are_the_chosen_rows_in_log_id_order(
    tmp_path: Path,
) -> None:
    """Chosen collected slice by slice and named batch by batch: the same rows, by log id."""
    from pipeline.labelers.combine import combine

    out = run_label(tmp_path, csv=CSV)
    combined = combine(
        out["labels"], out["logs"]["id"], ("csv", "external", "rules"), ["errors", "fast"]
    )
    whole = combined.chosen().collect()
    assert whole.height == out["logs"].height + 1 and whole["log_id"].is_sorted()
    for slice_rows, batch_rows in ((1, 1), (7, 50), (299, 1000), (300, 301)):
        batches = list(combined.chosen_batches(slice_rows, batch_rows))
        assert len(batches) == -(-whole.height // batch_rows)
        assert pl.concat(batches).equals(whole)


def test_one_label_row_per_log_and_source(tmp_path: Path) -> None:
    """labels.parquet never holds two rows for one (log_id, source)."""
    labels = run_label(tmp_path, csv=CSV)["labels"]
    assert labels.select("log_id", "source").is_unique().all()


def test_csv_beats_rules_and_the_first_listed_rule_beats_later_ones(tmp_path: Path) -> None:
    """Default precedence csv > external > rules; among rules the job file's order."""
    out = run_label(tmp_path, csv=CSV)
    chosen = out["chosen"]
    ids = out["logs"]["id"].to_list()
    row = chosen.filter(pl.col("log_id") == ids[0]).row(0, named=True)
    assert (row["source"], row["feedback"]) == ("csv:a.csv", -1)
    errors = out["logs"].filter(pl.col("status_code") >= 500)["id"]
    picked = chosen.filter(pl.col("log_id").is_in(errors.implode()) & (pl.col("kind") == "rules"))
    assert picked.height > 0 and set(picked["source"]) == {"rule:errors"}
    assert set(picked["score"].to_list()) == {None}  # taken whole from the winning rule


def test_old_logs_named_in_a_csv_are_kept_outside_the_window(tmp_path: Path) -> None:
    """A CSV label for a log the window does not hold is chosen, marked in_window = false."""
    out = run_label(tmp_path, csv=CSV)
    old = out["chosen"].filter(pl.col("log_id") == "OLD-LOG-1").row(0, named=True)
    assert (old["in_window"], old["feedback"], old["kind"]) == (False, -1, "csv")
    assert out["result"].outside_window == 1


def test_a_log_the_extract_spelled_in_lower_case_is_one_labeled_log_in_the_window(
    tmp_path: Path,
) -> None:
    """An analyst's upper-case ULID names the window's log the API spelled in lower case: one
    chosen row, in the window (not a second log outside it), with the id in canonical spelling."""
    job = make_job(tmp_path, RULES)
    entries = sample_logs(300)
    entries[0] = {**entries[0], "id": entries[0]["id"].lower()}
    logs = write_logs(job, entries)
    ulid = logs["id"][0].upper()
    write_csv(job.labels.csv.inbox, "a.csv", f"log_id,feedback\n{ulid},down\n")
    run = make_run(job)
    result = asyncio.run(label(job, run, clock=lambda: NOW))
    chosen = pl.read_parquet(run.paths.chosen)
    rows = chosen.filter(pl.col("log_id").str.to_uppercase() == ulid)
    assert rows.select("log_id", "source", "in_window").rows() == [(ulid, "csv:a.csv", True)]
    assert (result.total, result.outside_window) == (300, 0)


def test_analysis_numbers_add_up(tmp_path: Path) -> None:
    """Every count in the analysis is consistent with the files it describes."""
    out = run_label(tmp_path, csv=CSV)
    a, chosen, labels = out["analysis"], out["chosen"], out["labels"]
    assert a["chosen"] == chosen.height == sum(s["chosen"] for s in a["sources"].values())
    assert a["chosen_in_window"] + out["result"].outside_window == chosen.height
    assert sum(s["labels"] for s in a["sources"].values()) == labels.height
    for s in a["sources"].values():
        assert s["in_window"] + s["outside_window"] == s["labels"]
        assert s["positive"] + s["negative"] <= s["labels"]
        assert s["conflicts"] <= s["overlaps"] <= s["labels"]
        assert s["coverage"] == pytest.approx(s["in_window"] / a["window_logs"], abs=1e-6)
    assert a["conflicts"] == int(chosen["disagree"].sum()) == out["result"].conflicts
    assert a["labeled_logs"] == labels["log_id"].n_unique()
    for pair in a["agreement"]["sources"] + a["agreement"]["kinds"]:
        assert pair["agree"] + pair["disagree"] == pair["both_feedback"] <= pair["overlap"]
    assert out["result"].by_source == dict(labels["source"].value_counts().iter_rows())
    assert sum(out["result"].chosen_by_kind.values()) == chosen.height


def test_agreement_between_analysts_and_rules_is_measured(tmp_path: Path) -> None:
    """Where the analysts and a rule both judged a log, their (dis)agreement is counted."""

    def analysts(logs: pl.DataFrame) -> str:  # the 5xx logs, every other one marked "up"
        errors = logs.filter(pl.col("status_code") >= 500)["id"].to_list()
        rows = [f"{log_id},{'down' if i % 2 == 0 else 'up'}" for i, log_id in enumerate(errors)]
        return "log_id,feedback\n" + "\n".join(rows) + "\n"

    out = run_label(tmp_path, csv=analysts)
    errors = out["logs"].filter(pl.col("status_code") >= 500)["id"].to_list()
    assert len(errors) >= 2
    pair = next(
        p
        for p in out["analysis"]["agreement"]["sources"]
        if (p["a"], p["b"]) == ("csv:a.csv", "rule:errors")
    )
    assert pair["both_feedback"] == len(errors)
    assert pair["agree"] == (len(errors) + 1) // 2
    assert pair["agreement"] == pytest.approx(pair["agree"] / len(errors), abs=1e-6)


def test_a_kind_left_out_of_precedence_is_analysed_but_never_chosen(tmp_path: Path) -> None:
    """Shadow mode: precedence = ["csv"] runs the rules and measures them, applies only csv."""
    out = run_label(tmp_path, RULES + '\n[load]\nprecedence = ["csv"]\n', csv=CSV)
    assert set(out["chosen"]["kind"]) == {"csv"}
    assert out["analysis"]["sources"]["rule:everything"]["labels"] == out["logs"].height
    assert out["analysis"]["sources"]["rule:everything"]["chosen"] == 0


def test_label_before_extract_says_which_stage_to_run(tmp_path: Path) -> None:
    """No logs for the window and no extract result: run extract first."""
    job = make_job(tmp_path)
    run = make_run(job)
    with pytest.raises(StageError, match="extract"):
        asyncio.run(label(job, run, clock=lambda: NOW))


def test_rerunning_the_label_stage_of_a_run_gives_the_same_labels(tmp_path: Path) -> None:
    """Resume: the CSV moved on the first pass is read again; nothing is lost or doubled."""
    out = run_label(tmp_path, csv=CSV)
    again = asyncio.run(label(out["job"], out["run"], clock=lambda: NOW))
    assert pl.read_parquet(out["run"].paths.chosen).equals(out["chosen"])
    timing = {"seconds"}
    assert {k: v for k, v in again.to_json().items() if k not in timing} == {
        k: v for k, v in out["json"].items() if k not in timing
    }


# ---------------------------------------------------------------------------------------------
# Precedence, property-based

SOURCES = ["csv:a.csv", "csv:b.csv", "external:judge", "rule:r1", "rule:r2", "rule:r3"]
KIND = {"csv": "csv", "external": "external", "rule": "rules"}


@st.composite
def label_sets(draw: st.DrawFn) -> pl.DataFrame:
    rows = []
    for log in range(draw(st.integers(0, 12))):
        for source in draw(st.sets(st.sampled_from(SOURCES), min_size=1)):
            feedback = draw(st.sampled_from([1, -1, None]))
            score = draw(st.one_of(st.none(), st.floats(0, 100)))
            if feedback is None and score is None:
                score = 1.0
            rows.append((f"L{log}", feedback, score, source, "r"))
    frame = pl.DataFrame(
        rows,
        schema={
            "log_id": pl.String,
            "feedback": pl.Int8,
            "score": pl.Float64,
            "source": pl.String,
            "reason": pl.String,
        },
        orient="row",
    )
    return to_label_frame(frame, datetime(2026, 1, 1, tzinfo=UTC))


@settings(max_examples=examples(full=100, fast=25), deadline=None)
@given(
    label_sets(),
    st.permutations(["csv", "external", "rules"]).flatmap(
        lambda p: st.integers(1, 3).map(lambda n: tuple(p[:n]))
    ),
    st.permutations(["r1", "r2", "r3"]),
)
def test_chosen_label_is_the_highest_precedence_source(
    labels: pl.DataFrame, precedence: tuple[str, ...], rule_order: list[str]
) -> None:
    """Per log: the source whose kind ranks first (rules by job order) wins, its label whole;
    logs labeled only by kinds outside the precedence get no chosen label."""
    chosen = choose(labels, precedence, rule_order, pl.Series(["L0", "L1"]))
    expected = {}
    for log_id, group in labels.group_by("log_id"):
        candidates = []
        for row in group.iter_rows(named=True):
            prefix, _, name = row["source"].partition(":")
            kind = KIND[prefix]
            if kind in precedence:
                within = rule_order.index(name) if kind == "rules" else 0
                candidates.append((precedence.index(kind), within, row["source"], row))
        feedbacks = set(group["feedback"].drop_nulls())
        if candidates:
            best = min(candidates, key=lambda c: c[:3])[3]
            expected[log_id[0]] = (best["source"], best["feedback"], best["score"], feedbacks)
    assert chosen["log_id"].is_unique().all()
    assert set(chosen["log_id"]) == set(expected)
    for row in chosen.iter_rows(named=True):
        source, feedback, score, feedbacks = expected[row["log_id"]]
        assert (row["source"], row["feedback"], row["score"]) == (source, feedback, score)
        assert row["disagree"] == (feedbacks == {1, -1})
        assert row["in_window"] == (row["log_id"] in ("L0", "L1"))


def test_label_command_prints_a_summary(tmp_path: Path) -> None:
    """`aigw-feedback label JOB --run RUN` labels the run and says what it did."""
    from click.testing import CliRunner

    from pipeline.cli import cli

    job = make_job(tmp_path, RULES)
    write_logs(job, sample_logs(100))
    write_csv(job.labels.csv.inbox, "a.csv", "log_id,feedback\nOLD-1,up\nOLD-2,meh\n")
    run = make_run(job)
    result = CliRunner().invoke(cli, ["label", str(job.path), "--run", run.run_id])
    assert result.exit_code == 0, result.output
    assert "logs labeled" in result.output
    assert "csv      1 file, 2 rows: 1 accepted, 1 rejected (bad_feedback 1)" in result.output
    assert run.paths.chosen.exists()


# ---------------------------------------------------------------------------------------------
# The streamed stage against the outputs of the in-memory stage it replaced

GOLDEN = Path(__file__).parent / "data" / "label_golden.json"
MIXED_RULES = (
    RULES
    + """
[[labels.rules]]
name = "never"
when = "status_code = 999"
feedback = -1

[[labels.rules]]
name = "speed"
when = "duration > 0"
feedback = "CASE WHEN duration < 2000 THEN 1 ELSE 0 END"
score = "duration / 40"
reason = "speed"

[[labels.rules]]
name = "pricey"
when = "cost > 0.001 OR tokens_in IS NULL"
score = 10
"""
)
# A judge that answers for every third log it is sent, from the status code.
JUDGE_CODE = (
    "import json, sys, polars as pl; "
    "f = pl.read_parquet(sys.argv[1]).sort('id').gather_every(3); "
    "rows = [json.dumps({'log_id': i, 'feedback': 1 if s < 400 else -1, 'reason': 'judged'}) "
    "for i, s in zip(f['id'], f['status_code'])]; "
    "open(sys.argv[2], 'w').write('\\n'.join(rows))"
)
MIXED_VARIANTS = {
    "default": "",
    "shadow": '\n[load]\nprecedence = ["external", "csv"]\n',
}


def mixed_outputs(tmp_path: Path, variant: str) -> dict[str, Any]:
    """The stage's outputs on a fixture that mixes every kind of source, as plain JSON values."""
    external = (
        "\n[labels.external]\n"
        f'command = [{json.dumps(sys.executable)}, "-c", {json.dumps(JUDGE_CODE)}, '
        '"{input}", "{output}"]\n'
        'send = "all"\nfetch_heads = false\n'
    )
    job = make_job(tmp_path, MIXED_RULES + external + MIXED_VARIANTS[variant])
    logs = write_logs(job, sample_logs(300, seed=5))
    ids = logs["id"].to_list()
    inbox = job.labels.csv.inbox
    write_csv(inbox, "a.csv", CSV.format(*ids))
    write_csv(
        inbox,
        "b.csv",
        "log_id;rating;score;comment\n"
        + "".join(f"{ids[k]};{'up' if k % 2 else 'down'};{k % 120};b{k}\n" for k in range(0, 60, 4))
        + "OLD-LOG-1;up;;\nOLD-LOG-2;;55;\n",
    )
    run = make_run(job)
    result = asyncio.run(label(job, run, clock=lambda: NOW)).to_json()
    analysis = json.loads(run.paths.label_analysis.read_text())

    def rows(path: Path, order: list[str]) -> list[list[Any]]:
        frame = pl.read_parquet(path).sort(order)
        return [[v.isoformat() if isinstance(v, datetime) else v for v in r] for r in frame.rows()]

    drop = {"seconds", "paths", "run_id", "timeline"}  # when, not what
    result = {k: v for k, v in result.items() if k not in drop}
    result["external"] = {k: v for k, v in result["external"].items() if k != "seconds"}
    analysis["external"] = {k: v for k, v in analysis["external"].items() if k != "seconds"}
    outputs = {
        "result": result,
        "analysis": {k: v for k, v in analysis.items() if k not in ("run_id", "window")},
        "chosen": rows(run.paths.chosen, ["log_id"]),
        "labels": rows(run.paths.labels, ["source", "log_id"]),
    }
    loaded = json.loads(json.dumps(outputs).replace(run.run_id, "RUN"))  # processed/<run>/a.csv
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize("variant", sorted(MIXED_VARIANTS))
def test_the_streamed_stage_gives_the_outputs_of_the_in_memory_stage(
    tmp_path: Path, variant: str
) -> None:
    """Same labels, same chosen rows, same analysis numbers as the stage that held every log in
    memory (its outputs on this fixture are kept in tests/data/label_golden.json)."""
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))[variant]
    assert mixed_outputs(tmp_path, variant) == golden
