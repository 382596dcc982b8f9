"""report.html as a person reads it, parsed with a real HTML parser: the status and its cause
first, the sections in order, a chart per stage, the label pictures, tables that reflow, words
instead of keys, and hostile strings from logs and CSV files arriving as text."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from test_report import full_run, write_outcome

from pipeline.report import build_report
from pipeline.state import store
from pipeline.state.store import RunInfo

SCRIPT = "<script>alert(1)</script>"
BREAKOUT = '"><img src=x onerror=alert(1)>'
FORMULA = '=HYPERLINK("evil.example","click")'
SNAKE = re.compile(r"\b[a-z0-9]+_[a-z0-9_]+\b")
VOID = {"meta", "br", "img", "hr", "input", "link", "source", "wbr"}


class Page(HTMLParser):
    """The parts of a page the tests look at: tags, attributes, visible text, the ids of the
    elements each <svg> sits in, and the class of every table cell."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.ids: list[str] = []
        self.svg_in: list[set[str]] = []
        self.cells: list[tuple[str, str]] = []  # (class, text) of every td
        self.by_id: dict[str, list[str]] = {}  # the text inside each element with an id
        self.tables_in_scroll: list[bool] = []
        self._stack: list[tuple[str, str, str]] = []
        self._cell: list[str] | None = None
        self._cell_class = ""
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        self.attrs += attrs
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if tag == "svg":
            self.svg_in.append({i for _, i, _ in self._stack if i})
        if tag == "table":
            self.tables_in_scroll.append(any("scroll" in c.split() for *_, c in self._stack[-1:]))
        if tag == "td":
            self._cell, self._cell_class = [], str(a.get("class") or "")
        if tag not in VOID:
            self._stack.append((tag, str(a.get("id") or ""), str(a.get("class") or "")))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.cells.append((self._cell_class, "".join(self._cell).strip()))
            self._cell = None
        while self._stack:
            if self._stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._stack and self._stack[-1][0] == "style":
            return
        self.text.append(data)
        for _, ident, _ in self._stack:
            if ident:
                self.by_id.setdefault(ident, []).append(data)
        if self._cell is not None:
            self._cell.append(data)

    @property
    def visible(self) -> str:
        return " ".join(self.text)

    def element_text(self, ident: str) -> str:
        """The visible text inside the element with this id, spaces collapsed."""
        return " ".join("".join(self.by_id.get(ident, [])).split())


def analysis(sources: dict[str, dict[str, Any]], pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """label_analysis.json as the label stage writes it (the parts the report draws)."""
    return {
        "window_logs": 500,
        "labeled_logs": 12,
        "overlapping_logs": 3,
        "sources": sources,
        "agreement": {"sources": pairs, "kinds": []},
        "csv": {"by_file": [{"name": "a.csv", "status": "applied", "encoding": "utf-8",
                             "rows": 6, "accepted": 4, "rejected": 2, "labels": 4,
                             "sha256": "ab" * 32}]},
    }  # fmt: skip


def source(labels: int, good: int, bad: int) -> dict[str, Any]:
    return {"labels": labels, "in_window": labels, "positive": good, "negative": bad,
            "overlaps": 1, "conflicts": 0, "coverage": labels / 500}  # fmt: skip


def labeled(run: RunInfo, *, hostile: bool = False) -> None:
    """Two sources that overlap (and disagree on one log), and rejected rows with reasons."""
    name = f"csv:{BREAKOUT}.csv" if hostile else "csv:a.csv"
    pair = {"a": name, "b": "rule:slow", "overlap": 3, "agree": 1, "disagree": 1,
            "both_feedback": 2, "agreement": 0.5, "both_score": 0, "score_mean_abs_diff": None}  # fmt: skip
    sources = {name: source(4, 3, 1), "rule:slow": source(8, 0, 8)}
    if hostile:
        sources[SCRIPT] = source(2, 1, 1)
    store.write_json_atomic(analysis(sources, [pair]), run.paths.label_analysis)
    rows = [
        {"file": "a_very_long_file_name-2026-11-01.csv", "line": 7, "reason": "bad_feedback",
         "detail": f"feedback {SCRIPT} is not one of 1/-1" if hostile else "feedback meh is not 1/-1",
         "cells": {"Log ID": "x", "Rating": FORMULA if hostile else "meh"}},
        {"file": "a.csv", "line": 8, "reason": "missing_key", "detail": "no log id in this row",
         "cells": {"Log ID": "", "Rating": BREAKOUT if hostile else "up"}},
    ]  # fmt: skip
    store.write_json_atomic(
        {"version": 1, "files": [], "rows": rows}, run.paths.root / "rejects.json"
    )


def test_the_page_opens_with_the_status_and_its_cause_then_the_sections_in_order(
    tmp_path: Path,
) -> None:
    """A partial run: the badge says PARTIAL, the cause card holds the first problem, and the
    sections follow in reading order: what changed, requests, labels, sums, stages, failures,
    rejected rows."""
    job, run = full_run(tmp_path, failed=2)
    labeled(run)
    result = build_report(job, run)
    html = result.texts["html"]
    page = Page(html)
    assert result.status == "partial"
    assert "PARTIAL" in page.element_text("status")
    cause = page.element_text("cause")
    assert cause.startswith("Why:") and result.data["problems"][0] in cause
    sections = ["status", "cause", "changes", "requests", "labels", "sums", "stages",
                "failures", "rejects"]  # fmt: skip
    assert [i for i in page.ids if i in sections] == sections


def test_every_stage_that_sent_requests_has_its_chart_against_the_budget(tmp_path: Path) -> None:
    """Extract, the plan's look-ups, load and verify each get an SVG of requests per second with
    the budget line, several ticks on each axis and units; a stage that sent nothing gets none."""
    job, run = full_run(tmp_path)
    plan = json.loads(run.paths.stage_result("plan").read_text())
    store.write_json_atomic({**plan, "lookup_requests": 2}, run.paths.stage_result("plan"))
    html = build_report(job, run).texts["html"]
    page = Page(html)
    charted = {
        i.removeprefix("chart-") for ids in page.svg_in for i in ids if i.startswith("chart-")
    }
    assert charted == {"extract", "plan", "load", "verify"}  # label sent no request
    for stage in sorted(charted):
        part = html.split(f'id="chart-{stage}"', 1)[1].split("</figure>", 1)[0]
        assert part.count('class="budget"') == 1
        assert len(re.findall(r'class="lbl">[0-9.,]+ s<', part)) >= 3  # x ticks, in seconds
        assert len(re.findall(r'class="lbl">[0-9.,]+<', part)) >= 3  # y ticks
        assert "requests per second" in part and "time since the stage began" in part


def test_labels_are_drawn_as_coverage_bars_and_an_overlap_matrix(tmp_path: Path) -> None:
    """Coverage per source is a bar per source; overlap between sources a matrix whose cells
    count logs labeled by both, the disagreeing pair in red; the agreement is a table in words."""
    job, run = full_run(tmp_path)
    labeled(run)
    html = build_report(job, run).texts["html"]
    page = Page(html)
    coverage = html.split('id="coverage"', 1)[1].split("</figure>", 1)[0]
    assert coverage.count('class="bar-row"') == 2 and "8 · 1.6%" in coverage
    assert any("overlap" in ids for ids in page.svg_in)
    matrix = html.split('id="overlap"', 1)[1].split("</figure>", 1)[0]
    assert matrix.count('class="cell conflict"') == 2  # (1, 2) and (2, 1)
    assert "1 of 2 (50%)" in page.visible  # feedback agrees on 1 of the 2 both gave


def test_no_key_or_code_reaches_a_reader_and_no_hash_either(tmp_path: Path) -> None:
    """Every label a person reads is in words: no snake_case (stamp_skipped, keep_existing,
    bad_feedback ...) anywhere in the visible text of either report, and no sha256 hash."""
    job, run = full_run(tmp_path, failed=1, mismatched=1)
    labeled(run)
    result = build_report(job, run)
    visible = Page(result.texts["html"]).visible.replace("a_very_long_file_name", "")
    assert SNAKE.findall(visible) == []
    assert "run stamp left off" in visible and "kept: feedback set by someone else" in visible
    assert "ab" * 32 not in result.texts["html"]
    md = result.texts["md"].replace("a\\_very\\_long\\_file\\_name", "")
    md = re.sub(r"`[^`]*`", "", md.replace("a_very_long_file_name", ""))
    assert SNAKE.findall(md.replace("\\_", "_")) == []


def test_tables_reflow_on_a_phone(tmp_path: Path) -> None:
    """Each table scrolls inside its own box; numbers and file names never break mid-way."""
    job, run = full_run(tmp_path, failed=1)
    labeled(run)
    html = build_report(job, run).texts["html"]
    page = Page(html)
    assert page.tables_in_scroll and all(page.tables_in_scroll)
    numbers = [text for cls, text in page.cells if re.fullmatch(r"[0-9,]+", text)]
    assert numbers and all(
        cls == "n" for cls, text in page.cells if re.fullmatch(r"[0-9,]+", text) and text
    )
    assert ("nowrap", "a_very_long_file_name-2026-11-01.csv") in page.cells
    css = html.split("<style>", 1)[1].split("</style>", 1)[0]
    assert (
        ".scroll{overflow-x:auto" in css and "td.n,th.n{text-align:right;white-space:nowrap" in css
    )
    assert '<meta name="viewport" content="width=device-width,initial-scale=1">' in html


def test_hostile_strings_from_logs_and_csv_arrive_as_text(tmp_path: Path) -> None:
    """<script>, a quote that tries to close an attribute with an <img onerror>, and a
    spreadsheet formula, from a provider name, a source, a file, a reject and a failure: in the
    HTML no tag or attribute gets in and each shows as written; in the Markdown no tag starts."""
    job, run = full_run(tmp_path, failed=1, provider=BREAKOUT, model=SCRIPT)
    labeled(run, hostile=True)
    write_outcome(run, error={"kind": "other", "stage": "load", "message": FORMULA + SCRIPT})
    result = build_report(job, run)
    html, md = result.texts["html"], result.texts["md"]
    page = Page(html)
    assert not {"script", "img"} & set(page.tags)
    assert not {"onerror", "src", "href"} & {name for name, _ in page.attrs}
    for hostile in (SCRIPT, BREAKOUT, FORMULA):
        assert hostile in page.visible
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert f"Rating: {FORMULA}" in page.visible  # the reject's cells, as text
    assert not re.search(r"(?<!\\)[<>]", md)  # every < and > is escaped: no tag starts
    assert "\\<script\\>alert(1)\\</script\\>" in md and FORMULA in md
