"""The `runs` listing as a library call: what it says, what it prints as JSON, and that it only looks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.runs import list_runs_report
from pipeline.state import history
from pipeline.window import Window

D = datetime(2026, 11, 20, tzinfo=UTC)
DAY = timedelta(days=1)


def record(data_dir: Path, run_id: str, job: str, n: int, status: str) -> None:
    window = Window(D + n * DAY, D + (n + 1) * DAY)
    history.record_started(
        data_dir,
        run_id=run_id,
        job=job,
        gateway_id="gw",
        window=window,
        mode="nightly",
        started_at=D + n * DAY,
    )
    history.record_finished(
        data_dir,
        run_id,
        status=status,
        counts={"logs": 1200, "patched": 10},
        finished_at=D + n * DAY + timedelta(seconds=90),
    )


def test_a_data_dir_where_nothing_ran_says_so_and_stays_absent(tmp_path: Path) -> None:
    """No state database: "no runs recorded yet in X", exit 0, no JSON, and X not created."""
    missing = tmp_path / "no-such-data"
    listing = list_runs_report(missing)
    assert listing.summary() == f"no runs recorded yet in {missing}"
    assert listing.to_json() == [] and listing.exit_code == 0
    assert not missing.exists()


def test_runs_of_one_job_newest_first_with_counts_and_the_watermark(tmp_path: Path) -> None:
    """Each run is a line of the table (window as a day, counts with separators), newest first,
    then the job's watermark; `job` keeps other jobs out of both."""
    record(tmp_path, "r0", "nightly", 0, "ok")
    record(tmp_path, "r1", "nightly", 1, "partial")
    record(tmp_path, "other", "backfill", 2, "ok")
    history.advance_watermark(
        tmp_path, "nightly", "gw", Window(D, D + DAY), run_id="r0", now=D, may_start=True
    )
    listing = list_runs_report(tmp_path, job="nightly")
    lines = listing.summary().splitlines()
    assert lines[0].split() == ["RUN", "JOB", "GATEWAY", "MODE", "WINDOW", "STATUS", "LOGS",
                                "PATCHED", "VERIFIED", "DURATION"]  # fmt: skip
    assert lines[1].split()[:8] == ["r1", "nightly", "gw", "nightly", "2026-11-21", "partial",
                                    "1,200", "10"]  # fmt: skip
    assert lines[2].split()[0] == "r0"
    assert lines[-1] == "watermark nightly on gw: 2026-11-21T00:00:00Z"
    assert [run["run_id"] for run in listing.to_json()] == ["r1", "r0"]
    assert listing.exit_code == 0


def test_the_runs_page_has_a_row_a_link_and_the_charts_per_night(tmp_path: Path) -> None:
    """`runs --html`: one row per run with its status, a relative link to each run's existing
    report.html (none for a run without one), and an SVG chart per measure over the nights."""
    data_dir, out = tmp_path / "data", tmp_path / "site" / "history.html"
    for n, status in enumerate(["ok", "failed", "ok"]):
        record(data_dir, f"r{n}", "nightly", n, status)
    for run_id in ("r0", "r1"):  # r2 has no report yet
        folder = data_dir / "runs" / run_id
        folder.mkdir(parents=True)
        (folder / "report.html").write_text("<p>report</p>")
        (folder / "report.json").write_text('{"requests": {"total": 42}}')
    ran = CliRunner().invoke(
        cli, ["runs", "--html", "--data-dir", str(data_dir), "--out", str(out)]
    )
    assert ran.exit_code == 0, ran.output
    assert str(out) in ran.output

    class Page(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.links: list[str] = []
            self.rows = 0
            self.svgs = 0
            self.tags: set[str] = set()

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.add(tag)
            a = dict(attrs)
            self.links += [str(a["href"])] if tag == "a" else []
            self.rows += tag == "tr" and a.get("class") == "run"
            self.svgs += tag == "svg"

    page = Page()
    page.feed(out.read_text())
    assert page.rows == 3
    assert page.links == ["../data/runs/r1/report.html", "../data/runs/r0/report.html"]
    assert all((out.parent / link).is_file() for link in page.links)
    assert page.svgs == 5  # labels, patched, verified, failed, requests
    assert "script" not in page.tags and "42" in out.read_text()


def test_the_runs_page_of_a_missing_data_dir_creates_nothing(tmp_path: Path) -> None:
    """`runs --html` on a data dir that does not exist: a usage error (exit 2), no folder made."""
    missing = tmp_path / "typo"
    ran = CliRunner().invoke(cli, ["runs", "--html", "--data-dir", str(missing)])
    assert ran.exit_code == 2
    assert f"no data dir at {missing}" in ran.output
    assert not missing.exists()
