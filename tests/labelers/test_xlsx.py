"""Spreadsheets in the inbox: an .xlsx is read sheet by sheet with the same accounting as CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openpyxl
import polars as pl
import pytest

from pipeline.config import CsvLabelsConfig
from pipeline.errors import InputError
from pipeline.labelers.csv import CsvLabeler
from pipeline.labelers.xlsx import read_workbook
from pipeline.sheets import write_xlsx

NOW = datetime(2026, 11, 25, 6, tzinfo=UTC)
LOGS = pl.DataFrame({"id": ["L1", "L2", "L3", "L4"]})


def labeler(inbox: Path) -> CsvLabeler:
    return CsvLabeler(CsvLabelsConfig(inbox=inbox))


def workbook_bytes(sheets: dict[str, list[list[Any]]], merges: dict[str, list[str]]) -> bytes:
    """A workbook with these sheets (rows from row 1; None is an empty cell) and merged ranges."""
    book = openpyxl.Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row, start=1):
                if value is not None:
                    sheet.cell(r, c, value)
        for cells in merges.get(title, []):
            sheet.merge_cells(cells)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def reports(out: Any, name: str) -> dict[str, dict[str, Any]]:
    """The file reports of `name`, by sheet."""
    return {f.get("sheet", ""): f for f in out.accounting["by_file"] if f["name"] == name}


MESSY = {
    "Labels": [
        ["Week 48: labels", None, None, None, None],  # a title merged over A1:E1
        ["Log ID", "Feedback", None, "Score", "Comment"],  # B2:C2 merged
        [],  # an empty row right under the header
        ["L1", "up", "under the merged header", "85", "fine"],  # score stored as text
        ["L2", -1, None, None, None],  # feedback as a number
        [],
        ["L3", None, None, 72.5, None],
        ["L4", "meh", None, None, None],  # bad_feedback, row 8
        [None, "up", None, None, None],  # missing_key, row 9
        ["L1", "down", None, "150", None],  # bad_score, row 10
        ["L2", "1", None, None, None, "beyond"],  # too_many_fields, row 11
        [None, None, None, None, None],
    ],
    "More": [["log_id", "score"], ["L3", "90"], ["L4", 55.0]],
    "Notes": [["These are my notes"], ["nothing to see"]],
}


def test_a_messy_workbook_is_accounted_for_exactly(tmp_path: Path) -> None:
    """Title row, merged header cells, empty rows, numbers as text, a second and a third sheet:
    Labels 7 rows = 3 accepted + 4 rejected, More 2 = 2 + 0, Notes named as not read."""
    data = workbook_bytes(MESSY, {"Labels": ["A1:E1", "B2:C2"]})
    (tmp_path / "book.xlsx").write_bytes(data)
    out = labeler(tmp_path).run(LOGS, "run-1", NOW)
    sheets = reports(out, "book.xlsx")
    labels, more, notes = sheets["Labels"], sheets["More"], sheets["Notes"]
    assert (labels["rows"], labels["accepted"], labels["rejected"]) == (7, 3, 4)
    assert labels["rejected_by_reason"] == {
        "bad_feedback": 1,
        "bad_score": 1,
        "missing_key": 1,
        "too_many_fields": 1,
    }
    assert (more["rows"], more["accepted"], more["rejected"]) == (2, 2, 0)
    assert labels["superseded"] == 1  # L3's 72.5, superseded by the later sheet's 90
    assert notes["status"] == "skipped" and "no log id column" in notes["detail"]
    assert out.accounting["files"] == 1 and out.accounting["rows"] == 9
    assert sorted(out.labels.select("log_id", "feedback", "score", "source").rows()) == [
        ("L1", 1, 85.0, "csv:book.xlsx#Labels"),
        ("L2", -1, None, "csv:book.xlsx#Labels"),
        ("L3", None, 90.0, "csv:book.xlsx#More"),
        ("L4", None, 55.0, "csv:book.xlsx#More"),
    ]
    assert (tmp_path / "processed" / "run-1" / "book.xlsx").read_bytes() == data


def test_rejected_rows_of_a_sheet_name_the_file_sheet_row_and_reason(tmp_path: Path) -> None:
    """book.Labels.rejects.csv: reject_line is the row number Excel shows, with the sheet."""
    (tmp_path / "book.xlsx").write_bytes(workbook_bytes(MESSY, {"Labels": ["A1:E1", "B2:C2"]}))
    out = labeler(tmp_path).run(LOGS, "run-1", NOW)
    path = reports(out, "book.xlsx")["Labels"]["rejects_path"]
    assert path == "processed/run-1/book.Labels.rejects.csv"
    with (tmp_path / path).open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["reject_line"], r["reject_sheet"], r["reject_reason"]) for r in rows] == [
        ("8", "Labels", "bad_feedback"),
        ("9", "Labels", "missing_key"),
        ("10", "Labels", "bad_score"),
        ("11", "Labels", "too_many_fields"),
    ]
    assert rows[0]["Log ID"] == "L4" and rows[0]["Feedback"] == "meh"


def test_a_workbook_without_a_usable_sheet_is_set_aside_with_the_reason(tmp_path: Path) -> None:
    """No sheet names a log id and a label: the file goes to rejected/, each sheet explained."""
    data = workbook_bytes({"Notes": [["hello"]], "Ids": [["log_id", "comment"], ["L1", "x"]]}, {})
    (tmp_path / "notes.xlsx").write_bytes(data)
    out = labeler(tmp_path).run(LOGS, "run-1", NOW)
    assert out.accounting["unreadable"] == 1 and out.labels.height == 0
    with pytest.raises(InputError, match=r"'Notes': no log id column.*'Ids': .*no feedback"):
        read_workbook(data)
    assert (tmp_path / "rejected" / "run-1" / "notes.xlsx.reason.txt").exists()


def test_a_filled_review_sheet_goes_straight_back_into_the_inbox(tmp_path: Path) -> None:
    """The sheet `sample --format xlsx` writes, filled in two rows: two labels, one no_label row,
    the read-only context columns ignored."""
    ids = ["01JADMCQQQBWH3NXZ5GCRN98D0", "01JADMCQQQBWH3NXZ5GCRN98D1", "01JADMCQQQBWH3NXZ5GCRN98D2"]
    frame = pl.DataFrame(
        {
            "log_id": ids,
            "request_text": ["Can you help?\n1, 2, 3", "=SUM(A1)", "plain"],
            "response_text": ["Sure.", "#N/A", "ok"],
            "feedback": [None, None, None],
            "score": [None, None, None],
            "reason": [None, None, None],
            "created_at": [datetime(2026, 11, 3, 12, tzinfo=UTC)] * 3,
            "model": ["m", "m", "m"],
        },
        schema_overrides={"feedback": pl.String, "score": pl.String, "reason": pl.String},
    )
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    out = write_xlsx(frame, tmp_path / "review.xlsx")
    book = openpyxl.load_workbook(out)
    sheet = book.worksheets[0]
    col = {c.value: c.column for c in sheet[1]}
    sheet.cell(2, col["feedback"], "👍")
    sheet.cell(3, col["feedback"], -1)  # a picked "-1" is stored as a number
    sheet.cell(3, col["score"], 20)
    sheet.cell(3, col["reason"], "-wrong order number")
    book.save(inbox / "review.xlsx")
    result = labeler(inbox).run(pl.DataFrame({"id": ids}), "run-1", NOW)
    review = reports(result, "review.xlsx")["review"]
    assert (review["rows"], review["accepted"], review["rejected"]) == (3, 2, 1)
    assert review["rejected_by_reason"] == {"no_label": 1}
    assert result.labels.select("log_id", "feedback", "score", "reason").rows() == [
        (ids[0], 1, None, "analyst label, review.xlsx#review row 2"),
        (ids[1], -1, 20.0, "-wrong order number"),
    ]


def test_a_workbook_saved_with_a_csv_name_is_read_as_a_workbook(tmp_path: Path) -> None:
    """labels.csv that is really an .xlsx (zip) is read as one, not refused."""
    data = workbook_bytes({"Sheet1": [["id", "rating"], ["L1", "up"]]}, {})
    (tmp_path / "labels.csv").write_bytes(data)
    out = labeler(tmp_path).run(LOGS, "run-1", NOW)
    assert out.labels.select("log_id", "feedback").rows() == [("L1", 1)]


def test_a_workbook_with_a_wrong_stored_size_is_read_in_full(tmp_path: Path) -> None:
    """Some exporters store the sheet's size as A1: every row and column is read anyway."""
    import re
    import zipfile

    data = workbook_bytes(
        {"Sheet1": [["log_id", "feedback"], *[[f"L{i}", "up"] for i in range(4)]]}, {}
    )
    source, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            body = source.read(item.filename)
            if item.filename.startswith("xl/worksheets/"):
                body = re.sub(rb'<dimension ref="[^"]*"\s*/>', b'<dimension ref="A1"/>', body)
            target.writestr(item, body)
    (table,) = read_workbook(out.getvalue()).tables
    assert table.header == ["log_id", "feedback"] and len(table.rows) == 4
