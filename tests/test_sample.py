"""Sampling logs for review: the file analysts fill in comes back through the inbox unchanged."""

from __future__ import annotations

import asyncio
import csv
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.config import JobConfig, load_job
from pipeline.emulator.app import create_app
from pipeline.emulator.server import running_emulator
from pipeline.emulator.settings import DEFAULT_READ_TOKEN, EmulatorSettings
from pipeline.emulator.store import EmulatorStore
from pipeline.errors import ConfigError, StageError, UsageError
from pipeline.gateway import open_client
from pipeline.gateway.client import LogsClient
from pipeline.label import label
from pipeline.sample import NOT_FOUND_TEXT, UNFETCHED_TEXT, TextPlan, equal_shares, sample
from tests.conftest import InProcessEmulator, ManualClock
from tests.labelkit import ACCOUNT, NOW, WINDOW, make_job, make_run, sample_logs, write_logs


def test_round_trip_sample_fill_in_drop_gives_labels_for_exactly_those_logs(tmp_path: Path) -> None:
    """sample → an analyst fills some rows (Excel-style edits) → inbox → labels for those rows."""
    job = make_job(tmp_path)
    logs = write_logs(job, sample_logs(300))
    out = tmp_path / "review.csv"
    result = sample(job, n=40, out=out, seed=5, text=False)
    assert result.rows == 40 and result.available == logs.height

    with out.open(encoding="utf-8-sig", newline="") as fh:
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
    sample(job, n=25, out=a, seed=9, where="success AND provider = 'openai'", text=False)
    sample(job, n=25, out=b, seed=9, where="success AND provider = 'openai'", text=False)
    assert a.read_bytes() == b.read_bytes()
    got = pl.read_csv(a, infer_schema=False)
    matching = logs.filter(pl.col("success") & (pl.col("provider") == "openai"))
    assert got.height == 25 and set(got["log_id"]) <= set(matching["id"])


def test_stratify_spreads_the_sample_over_a_metadata_key(tmp_path: Path) -> None:
    """--stratify-by metadata.app gives every app (and logs without one) an equal share."""
    job = make_job(tmp_path)
    write_logs(job, sample_logs(300))
    out = tmp_path / "r.csv"
    result = sample(job, n=30, out=out, stratify_by="metadata.app", text=False)
    assert sum(result.strata.values()) == 30
    assert max(result.strata.values()) - min(result.strata.values()) <= 1


def test_window_limits_the_days_read(tmp_path: Path) -> None:
    """--window 2026-11-03 reads that day only; a day with no extract is a clear error."""
    job = make_job(tmp_path)
    write_logs(job, sample_logs(50))
    result = sample(job, n=500, out=tmp_path / "r.csv", window="2026-11-03", text=False)
    assert result.rows == 50
    assert WINDOW.start.date().isoformat() == "2026-11-03"
    with pytest.raises(StageError, match="extract"):
        sample(job, n=5, out=tmp_path / "r.csv", window="2026-10-01", text=False)


def test_bad_options_name_the_problem(tmp_path: Path) -> None:
    """A typo in --where or --stratify-by lists the columns."""
    job = make_job(tmp_path)
    write_logs(job, sample_logs(20))
    with pytest.raises(UsageError, match=r"unknown column 'modle'.*model"):
        sample(job, n=5, out=tmp_path / "r.csv", where="modle = 'x'", text=False)
    with pytest.raises(UsageError, match=r"no such column.*metadata.<key>"):
        sample(job, n=5, out=tmp_path / "r.csv", stratify_by="modle", text=False)
    shutil.rmtree(job.store.data_dir)
    with pytest.raises(StageError):
        sample(job, n=5, out=tmp_path / "r.csv", text=False)


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
    args.append("--no-text")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "wrote 10 of 50" in result.output and "inbox" in result.output
    assert pl.read_csv(out, infer_schema=False).height == 10
    bad = CliRunner().invoke(cli, [*args, "--where", "nope = 1"])
    assert bad.exit_code == 2 and "unknown column 'nope'" in bad.output


# ---------------------------------------------------------------------------------------------
# The text: one GET per sampled log against the emulator, through the job's budget


@dataclass
class Api:
    job: JobConfig
    emu: InProcessEmulator
    entries: list[dict[str, Any]]

    def open(self) -> LogsClient:
        clock = self.emu.clock
        return open_client(self.job, transport=self.emu.transport(), clock=clock, sleep=clock.sleep)

    def requests(self) -> int:
        return sum(self.emu.control.stats.requests.values())


def api_job(tmp_path: Path, base_url: str, extra: str = "") -> JobConfig:
    budget = f'[budget]\nshared_state = "{tmp_path / "budget.sqlite"}"\n' + extra
    job = make_job(tmp_path, budget)
    env = {"CLOUDFLARE_API_TOKEN": DEFAULT_READ_TOKEN}
    return load_job(job.path, env=env).with_overrides(base_url=base_url)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    """300 logs extracted to the data dir and served by the in-process emulator (gateway gw)."""
    entries = sample_logs(300)
    with EmulatorStore() as emulator_store:
        emulator_store.insert_logs(ACCOUNT, "gw", entries)
        clock = ManualClock()
        app = create_app(EmulatorSettings(), emulator_store, clock, sleep=clock.sleep)
        emu = InProcessEmulator(app, emulator_store, clock, gateway_id="gw")
        job = api_job(tmp_path, emu.base_url)
        write_logs(job, entries)
        yield Api(job, emu, entries)


def test_the_cost_is_announced_before_any_request_and_is_what_is_spent(
    api: Api, tmp_path: Path
) -> None:
    """on_plan hears '40 GET requests' while nothing is sent; the emulator then counts 40."""
    heard: list[tuple[TextPlan, int]] = []
    result = sample(
        api.job,
        n=40,
        out=tmp_path / "r.xlsx",
        on_plan=lambda plan: heard.append((plan, api.requests())),
        open_api=api.open,
    )
    [(plan, sent_before)] = heard
    assert sent_before == 0 and plan.requests == plan.logs == 40
    assert plan.seconds == pytest.approx(40 / api.job.budget.rate_per_second)
    assert "40 GET requests" in plan.summary() and "requests/s" in plan.summary()
    assert api.requests() == result.requests == plan.requests
    assert result.rows == 40 and "40 requests" in result.summary()


def test_the_sheet_shows_what_the_user_asked_and_what_the_model_answered(
    api: Api, tmp_path: Path
) -> None:
    """request_text is the prompt, response_text the answer; a cut-off head says so."""
    out = tmp_path / "r.csv"
    sample(api.job, n=300, out=out, open_api=api.open)
    with out.open(encoding="utf-8-sig", newline="") as fh:
        got = {r["log_id"]: r for r in csv.DictReader(fh)}
    by_id = {e["id"]: e for e in api.entries}
    checked = {"openai": 0, "anthropic": 0, "incomplete": 0}
    for log_id, row in got.items():
        entry = by_id[log_id]
        messages = entry["request_body"].get("messages")
        if messages is None or not entry["success"]:
            continue
        if not entry["request_head_complete"]:
            assert (
                "…(incomplete: the log keeps only the first 512 characters" in row["request_text"]
            )
            checked["incomplete"] += 1
            continue
        assert row["request_text"] == messages[-1]["content"]
        body = entry["response_body"]
        if entry["provider"] == "anthropic":
            assert row["response_text"] == body["content"][0]["text"]
            checked["anthropic"] += 1
        elif "choices" in body:
            assert row["response_text"] == body["choices"][0]["message"]["content"]
            checked["openai"] += 1
    assert all(checked.values()), checked


def test_dry_run_says_what_it_would_cost_and_sends_and_writes_nothing(
    api: Api, tmp_path: Path
) -> None:
    """--dry-run: the plan in the summary, no request to the API, no file."""
    out = tmp_path / "r.xlsx"
    result = sample(api.job, n=25, out=out, dry_run=True, open_api=api.open)
    assert api.requests() == 0 and not out.exists()
    assert result.dry_run and result.text is not None and result.text.requests == 25
    assert "would write 25 of 300" in result.summary() and "25 GET requests" in result.summary()


def test_no_text_needs_no_token_and_a_missing_token_is_named(tmp_path: Path) -> None:
    """--no-text works without an API token; asking for the text without one says how to set it."""
    job = load_job(make_job(tmp_path).path, env={})
    write_logs(job, sample_logs(20))
    result = sample(job, n=5, out=tmp_path / "r.csv", text=False)
    assert result.text is None and result.requests == 0
    assert "request_text" not in pl.read_csv(tmp_path / "r.csv", infer_schema=False).columns
    with pytest.raises(ConfigError, match="CLOUDFLARE_API_TOKEN"):
        sample(job, n=5, out=tmp_path / "r2.csv")
    assert not (tmp_path / "r2.csv").exists()


def test_a_log_deleted_since_the_extract_and_the_budget_cap_leave_notes(tmp_path: Path) -> None:
    """A 404 says the log is gone; max_requests 10 fetches 10 and says the rest went without."""
    entries = sample_logs(30)
    with EmulatorStore() as emulator_store:
        emulator_store.insert_logs(ACCOUNT, "gw", entries)
        clock = ManualClock()
        app = create_app(EmulatorSettings(), emulator_store, clock, sleep=clock.sleep)
        emu = InProcessEmulator(app, emulator_store, clock, gateway_id="gw")
        job = api_job(tmp_path, emu.base_url, "max_requests = 10\n")
        write_logs(job, entries)
        api = Api(job, emu, entries)
        first = min(entries, key=lambda e: (e["created_at"], e["id"]))  # the first GET
        emulator_store.delete_ids(ACCOUNT, "gw", [first["id"]])
        out = tmp_path / "r.csv"
        result = sample(job, n=30, out=out, open_api=api.open)
        assert result.text is not None and result.text.requests == 10
        assert "max_requests (10)" in result.text.summary()
        rows = pl.read_csv(out, infer_schema=False)
        notes = rows["response_text"].value_counts().filter(pl.col("count") > 1)
        assert api.requests() == result.requests == 10
        assert (result.not_found, result.unfetched) == (1, 20)
        assert set(notes["response_text"]) == {UNFETCHED_TEXT}
        gone = rows.filter(pl.col("log_id") == first["id"])
        assert gone["request_text"].to_list() == [NOT_FOUND_TEXT]
        assert rows.filter(pl.col("response_text") == UNFETCHED_TEXT).height == result.unfetched
        assert "left without text" in result.summary()


def test_xlsx_round_trip_fill_in_read_back_gives_the_filled_labels(
    api: Api, tmp_path: Path
) -> None:
    """sample --format xlsx -> fill with openpyxl -> read as the inbox would -> those labels."""
    import openpyxl

    from pipeline.labelers.csvfile import match_header
    from pipeline.labelers.values import validate_labels

    out = tmp_path / "review.xlsx"
    sample(api.job, n=20, out=out, open_api=api.open, seed=3)
    book = openpyxl.load_workbook(out)
    sheet = book.worksheets[0]
    col = {c.value: c.column for c in sheet[1]}
    filled = {}
    for row in range(2, 12):
        log_id = sheet.cell(row, col["log_id"]).value
        sheet.cell(row, col["feedback"], "👎" if row % 2 else "👍")
        sheet.cell(row, col["score"], row * 5)
        filled[log_id] = (-1 if row % 2 else 1, float(row * 5))
    book.save(out)
    values = list(openpyxl.load_workbook(out).worksheets[0].values)
    header = [str(h) for h in values[0]]
    assert match_header(header).usable
    cells = pl.DataFrame(
        [["" if v is None else str(v) for v in row] for row in values[1:]],
        schema=header,
        orient="row",
    )
    labels = validate_labels(cells.select("log_id", "feedback", "score", "reason"))
    accepted = labels.filter(pl.col("reject").is_null())
    assert {r[0]: (r[1], r[2]) for r in accepted.select("log_id", "feedback", "score").rows()} == (
        filled
    )
    assert labels.filter(pl.col("reject") == "no_label").height == 10
    assert all(cells["request_text"].str.len_chars() > 0)


def test_csv_with_text_goes_through_the_inbox_unchanged(api: Api, tmp_path: Path) -> None:
    """Prompts with commas, quotes and line breaks do not disturb the CSV labeler's rows."""
    out = tmp_path / "review.csv"
    sample(api.job, n=30, out=out, open_api=api.open, seed=2)
    with out.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows[:12]:
        row["feedback"] = "up"
    inbox = api.job.labels.csv.inbox
    inbox.mkdir(parents=True)
    with (inbox / "done.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    labeled = asyncio.run(label(api.job, make_run(api.job), clock=lambda: NOW))
    assert labeled.csv["rows"] == 30 and labeled.csv["accepted"] == 12


def test_sample_command_prints_the_cost_first_then_where_it_wrote(tmp_path: Path) -> None:
    """Over real HTTP: stderr has '5 GET requests' before; stdout 'wrote 5 of 30 ... r.xlsx'."""
    from click.testing import CliRunner

    from pipeline.cli import cli

    entries = sample_logs(30)
    with EmulatorStore() as emulator_store:
        emulator_store.insert_logs(ACCOUNT, "gw", entries)
        # No rate limit to speak of, on either side: the default one would have the budget pace
        # the five requests for real (the cost and the output are what this test is about).
        unlimited = EmulatorSettings(rate_limit_requests=10**6)
        with running_emulator(unlimited, emulator_store, gateway_id="gw") as server:
            job = api_job(tmp_path, server.base_url, "requests_per_period = 100000\n")
            write_logs(job, entries)
            out = tmp_path / "r.xlsx"
            args = ["sample", str(job.path), "--n", "5", "--out", str(out)]
            env = {"CLOUDFLARE_API_TOKEN": DEFAULT_READ_TOKEN}
            runner = CliRunner()
            dry = runner.invoke(cli, [*args, "--dry-run", "--base-url", server.base_url], env=env)
            assert dry.exit_code == 0 and "5 GET requests" in dry.stdout and not out.exists()
            done = runner.invoke(cli, [*args, "--base-url", server.base_url], env=env)
            sent = sum(server.control.stats.requests.values())
    assert done.exit_code == 0, done.output
    assert "5 GET requests" in done.stderr and f"wrote 5 of 30 matching logs to {out}" in (
        done.stdout
    )
    assert sent == 5 and "5 requests" in done.stdout and out.exists()
    mismatch = runner.invoke(cli, [*args, "--format", "csv", "--no-text"], env=env)
    assert mismatch.exit_code == 2 and "call it r.csv" in mismatch.output


def test_filled_xlsx_dropped_in_the_inbox_gives_labels_for_exactly_the_filled_rows(
    api: Api, tmp_path: Path
) -> None:
    """sample review.xlsx -> pick 👍/👎 and type scores in openpyxl -> inbox -> those labels."""
    import openpyxl

    out = tmp_path / "review.xlsx"
    sample(api.job, n=30, out=out, open_api=api.open, seed=4)
    book = openpyxl.load_workbook(out)
    sheet = book.worksheets[0]
    col = {c.value: c.column for c in sheet[1]}
    filled: dict[str, tuple[int | None, float | None]] = {}
    for row in range(2, 22):
        log_id = str(sheet.cell(row, col["log_id"]).value)
        if row % 3 == 0:
            sheet.cell(row, col["feedback"], "👍")
            filled[log_id] = (1, None)
        elif row % 3 == 1:
            sheet.cell(row, col["feedback"], -1)  # what Excel stores for a picked -1
            sheet.cell(row, col["score"], 12.5)
            filled[log_id] = (-1, 12.5)
        else:
            sheet.cell(row, col["score"], 90)
            sheet.cell(row, col["reason"], "=looks right")
            filled[log_id] = (None, 90.0)
    inbox = api.job.labels.csv.inbox
    inbox.mkdir(parents=True)
    book.save(inbox / "review-done.xlsx")

    run = make_run(api.job)
    labeled = asyncio.run(label(api.job, run, clock=lambda: NOW))
    chosen = pl.read_parquet(run.paths.chosen)
    got = {r[0]: (r[1], r[2]) for r in chosen.select("log_id", "feedback", "score").rows()}
    assert got == filled
    assert labeled.csv["rows"] == 30 and labeled.csv["accepted"] == 20
    assert labeled.csv["rejected_by_reason"] == {"no_label": 10}


def test_review_xlsx_round_trip_through_apply_writes_and_verifies_every_filled_row(
    api: Api, tmp_path: Path
) -> None:
    """sample --format xlsx -> fill 15 of 25 rows -> apply: those 15 on the gateway, verified."""
    import openpyxl

    from pipeline.apply import apply_labels
    from pipeline.emulator.settings import DEFAULT_EDIT_TOKEN

    out = tmp_path / "review.xlsx"
    sample(api.job, n=25, out=out, fmt="xlsx", open_api=api.open, seed=8)
    book = openpyxl.load_workbook(out)
    sheet = book.worksheets[0]
    col = {c.value: c.column for c in sheet[1]}
    wanted: dict[str, tuple[int, float]] = {}
    for row in range(2, 17):
        log_id = str(sheet.cell(row, col["log_id"]).value)
        feedback, score = (1, 80.0) if row % 2 else (-1, 15.0)
        sheet.cell(row, col["feedback"], "👍" if feedback == 1 else "👎")
        sheet.cell(row, col["score"], score)
        wanted[log_id] = (feedback, score)
    filled = tmp_path / "review-filled.xlsx"
    book.save(filled)

    env = {"CLOUDFLARE_API_TOKEN": DEFAULT_EDIT_TOKEN}
    job = load_job(api.job.path, env=env).with_overrides(base_url=api.emu.base_url)
    clock = api.emu.clock
    result = asyncio.run(
        apply_labels(job, [filled], transport=api.emu.transport(), clock=clock, sleep=clock.sleep)
    )
    assert result.status == "ok", result.to_json()
    on_gateway = {}
    for log_id in wanted:
        path = f"/client/v4/accounts/{ACCOUNT}/ai-gateway/gateways/gw/logs/{log_id}"
        body = api.emu.call("GET", path).json()["result"]
        on_gateway[log_id] = (body["feedback"], body["score"])
    assert on_gateway == wanted
    verify, labeled = result.stages.verify, result.stages.label
    assert verify is not None and (verify.checked, verify.verified) == (15, 15)
    assert labeled is not None and labeled.csv["rows"] == 25
    assert labeled.csv["rejected_by_reason"] == {"no_label": 10}  # the rows left empty
