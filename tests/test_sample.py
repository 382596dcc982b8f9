"""Sampling logs for review: the file analysts fill in comes back through the inbox unchanged."""

from __future__ import annotations

import asyncio
import csv
import shutil
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import StageError, UsageError
from pipeline.label import label
from pipeline.sample import equal_shares, sample
from tests.labelkit import NOW, WINDOW, make_job, make_run, sample_logs, write_logs


def test_round_trip_sample_fill_in_drop_gives_labels_for_exactly_those_logs(tmp_path: Path) -> None:
    """sample → an analyst fills some rows (Excel-style edits) → inbox → labels for those rows."""
    job = make_job(tmp_path)
    logs = write_logs(job, sample_logs(300))
    out = tmp_path / "review.csv"
    result = sample(job, n=40, out=out, seed=5)
    assert result.rows == 40 and result.available == logs.height

    with out.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert all(r["feedback"] == r["score"] == r["reason"] == "" for r in rows)
    filled: dict[str, tuple[int | None, float | None]] = {}
    for i, row in enumerate(rows[:30]):
        if i % 3 == 0:
            row["feedback"], filled[row["log_id"]] = "👍", (1, None)
        elif i % 3 == 1:
            row["feedback"], row["score"], filled[row["log_id"]] = "bad", "20", (-1, 20.0)
        else:
            row["score"], filled[row["log_id"]] = "75%", (None, 75.0)
    job.labels.csv.inbox.mkdir(parents=True)
    with (job.labels.csv.inbox / "review-done.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    run = make_run(job)
    labeled = asyncio.run(label(job, run, clock=lambda: NOW))
    chosen = pl.read_parquet(run.paths.chosen)
    assert {
        r[0]: (r[1], r[2]) for r in chosen.select("log_id", "feedback", "score").rows()
    } == filled
    assert labeled.csv["rows"] == 40 and labeled.csv["accepted"] == 30
    assert labeled.csv["rejected_by_reason"] == {"no_label": 10}  # the rows left empty


def test_same_seed_same_file_and_where_filters(tmp_path: Path) -> None:
    """A seed reproduces the sample; --where keeps only matching logs."""
    job = make_job(tmp_path)
    logs = write_logs(job, sample_logs(300))
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    sample(job, n=25, out=a, seed=9, where="success AND provider = 'openai'")
    sample(job, n=25, out=b, seed=9, where="success AND provider = 'openai'")
    assert a.read_bytes() == b.read_bytes()
    got = pl.read_csv(a, infer_schema=False)
    matching = logs.filter(pl.col("success") & (pl.col("provider") == "openai"))
    assert got.height == 25 and set(got["log_id"]) <= set(matching["id"])


def test_stratify_spreads_the_sample_over_a_metadata_key(tmp_path: Path) -> None:
    """--stratify-by metadata.app gives every app (and logs without one) an equal share."""
    job = make_job(tmp_path)
    write_logs(job, sample_logs(300))
    out = tmp_path / "r.csv"
    result = sample(job, n=30, out=out, stratify_by="metadata.app")
    assert sum(result.strata.values()) == 30
    assert max(result.strata.values()) - min(result.strata.values()) <= 1


def test_window_limits_the_days_read(tmp_path: Path) -> None:
    """--window 2026-11-03 reads that day only; a day with no extract is a clear error."""
    job = make_job(tmp_path)
    write_logs(job, sample_logs(50))
    result = sample(job, n=500, out=tmp_path / "r.csv", window="2026-11-03")
    assert result.rows == 50
    assert WINDOW.start.date().isoformat() == "2026-11-03"
    with pytest.raises(StageError, match="extract"):
        sample(job, n=5, out=tmp_path / "r.csv", window="2026-10-01")


def test_bad_options_name_the_problem(tmp_path: Path) -> None:
    """A typo in --where or --stratify-by lists the columns."""
    job = make_job(tmp_path)
    write_logs(job, sample_logs(20))
    with pytest.raises(UsageError, match=r"unknown column 'modle'.*model"):
        sample(job, n=5, out=tmp_path / "r.csv", where="modle = 'x'")
    with pytest.raises(UsageError, match=r"no such column.*metadata.<key>"):
        sample(job, n=5, out=tmp_path / "r.csv", stratify_by="modle")
    shutil.rmtree(job.store.data_dir)
    with pytest.raises(StageError):
        sample(job, n=5, out=tmp_path / "r.csv")


@given(st.dictionaries(st.text(max_size=3), st.integers(0, 50), max_size=8), st.integers(0, 200))
def test_equal_shares_are_as_even_as_group_sizes_allow(sizes: dict[str, int], n: int) -> None:
    """Quotas sum to min(n, total), never exceed a group, and open groups differ by at most 1."""
    quotas = equal_shares(sizes, n)
    assert sum(quotas.values()) == min(n, sum(sizes.values()))
    assert all(0 <= quotas[g] <= sizes[g] for g in sizes)
    for u in (g for g in sizes if quotas[g] < sizes[g]):  # a group that could take more
        assert all(quotas[g] <= quotas[u] + 1 for g in sizes)


def test_sample_command_writes_the_file_and_says_what_next(tmp_path: Path) -> None:
    """`aigw-feedback sample JOB --n 10 --out r.csv` writes 10 rows; a bad --where exits 2."""
    from click.testing import CliRunner

    from pipeline.cli import cli

    job = make_job(tmp_path)
    write_logs(job, sample_logs(50))
    out = tmp_path / "r.csv"
    args = ["sample", str(job.path), "--n", "10", "--out", str(out), "--stratify-by", "provider"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "wrote 10 of 50" in result.output and "inbox" in result.output
    assert pl.read_csv(out, infer_schema=False).height == 10
    bad = CliRunner().invoke(cli, [*args, "--where", "nope = 1"])
    assert bad.exit_code == 2 and "unknown column 'nope'" in bad.output
