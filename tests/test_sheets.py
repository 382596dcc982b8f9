"""Review sheets as analysts open them: xlsx and CSV that come back through the inbox as they are."""

from __future__ import annotations

import csv
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
import polars as pl
import pytest

from pipeline.errors import UsageError
from pipeline.labelers.csvfile import match_header
from pipeline.labelers.values import parse_feedback, validate_labels
from pipeline.sheets import (
    EDITABLE,
    FEEDBACK_CHOICES,
    SHEET_TITLE,
    sheet_format,
    write_csv,
    write_xlsx,
)

HOSTILE = '=HYPERLINK("http://evil","x")'


def review(rows: int = 3) -> pl.DataFrame:
    """A review frame as sample writes it: id, texts, editable, context."""
    return pl.DataFrame(
        {
            "log_id": [f"01JADMCQQQBWH3NXZ5GCRN98D{i}" for i in range(rows)],
            "request_text": ["Can you help me?", "@SUM(A1)", "-- a list"][:rows],
            "response_text": ["Sure.\nHere is how.", "#N/A", "bell\x07 rings"][:rows],
            "feedback": [None] * rows,
            "score": [None] * rows,
            "reason": [None] * rows,
            "created_at": [datetime(2026, 11, 3, 12, 0, i, tzinfo=UTC) for i in range(rows)],
            "tokens_in": [180, None, 7][:rows],
            "cost": [0.00012, None, 0.0][:rows],
            "success": [True, False, True][:rows],
            "metadata": [f'{{"app":"{HOSTILE}"}}', HOSTILE, None][:rows],
            "current_feedback": [None, -1, 1][:rows],
        },
        schema_overrides={
            "feedback": pl.String,
            "score": pl.String,
            "reason": pl.String,
            "current_feedback": pl.Int8,
        },
    )


def test_xlsx_is_laid_out_for_filling_in(tmp_path: Path) -> None:
    """Header in row 1 of the first sheet, frozen panes, dropdown and 0-100 check, shaded edits."""
    out = write_xlsx(review(), tmp_path / "review.xlsx")
    book = openpyxl.load_workbook(out)
    sheet = book.worksheets[0]
    assert book.sheetnames == [SHEET_TITLE]
    header = [c.value for c in sheet[1]]
    assert header[:6] == ["log_id", "request_text", "response_text", *EDITABLE]
    assert sheet.freeze_panes == "B2"
    rules = {str(v.sqref): v for v in sheet.data_validations.dataValidation}
    assert rules["D2:D4"].type == "list" and rules["D2:D4"].formula1 == '"👍,👎,1,-1"'
    score = rules["E2:E4"]
    assert (score.type, score.operator, score.formula1, score.formula2) == (
        "decimal",
        "between",
        "0",
        "100",
    )
    assert all(v.showErrorMessage and v.allow_blank for v in rules.values())
    edit_fill = sheet["D2"].fill.fgColor.rgb
    assert sheet["D1"].fill.fgColor.rgb == edit_fill != sheet["A1"].fill.fgColor.rgb
    assert sheet["B2"].alignment.wrap_text and sheet.column_dimensions["B"].width >= 50
    assert sheet["G2"].value == datetime(2026, 11, 3, 12, 0, 0)  # a real date-time, UTC
    assert (sheet["H2"].value, sheet["H3"].value) == (180, None)


def test_every_dropdown_choice_is_a_value_the_inbox_accepts() -> None:
    """👍 👎 1 -1 parse, and so do the numbers Excel stores when 1 or -1 is picked."""
    assert None not in parse_feedback(list(FEEDBACK_CHOICES))
    assert parse_feedback(["1.0", "-1.0", "1", "-1"]) == [1, -1, 1, -1]


def test_log_strings_arrive_as_text_never_as_formulas_or_errors(tmp_path: Path) -> None:
    """=HYPERLINK(...) in metadata is a text cell with an apostrophe; no <f> in the sheet XML."""
    out = write_xlsx(review(), tmp_path / "review.xlsx")
    sheet = openpyxl.load_workbook(out).worksheets[0]
    col = {c.value: c.column_letter for c in sheet[1]}
    meta, hostile = sheet[f"{col['metadata']}2"], sheet[f"{col['metadata']}3"]
    assert meta.data_type == "s" and meta.value == f'{{"app":"{HOSTILE}"}}'
    assert hostile.data_type == "s" and hostile.value == "'" + HOSTILE
    assert sheet[f"{col['request_text']}3"].value == "'@SUM(A1)"
    assert sheet[f"{col['request_text']}4"].value == "'-- a list"
    na = sheet[f"{col['response_text']}3"]
    assert na.data_type == "s" and na.value == "#N/A"  # text, not Excel's error value
    assert sheet[f"{col['response_text']}4"].value == "bell\ufffd rings"
    xml = zipfile.ZipFile(out).read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in xml and "<f " not in xml


def test_filled_xlsx_reads_back_as_labels_for_the_filled_rows(tmp_path: Path) -> None:
    """An analyst picks from the dropdown and types scores; a reader gets exactly those labels."""
    out = write_xlsx(review(), tmp_path / "review.xlsx")
    book = openpyxl.load_workbook(out)
    sheet = book.worksheets[0]
    col = {c.value: c.column for c in sheet[1]}
    sheet.cell(2, col["feedback"], "👍")
    sheet.cell(3, col["feedback"], -1)  # Excel stores a picked "-1" as a number
    sheet.cell(3, col["score"], 20)
    sheet.cell(3, col["reason"], "wrong order number")
    book.save(out)

    reader = openpyxl.load_workbook(out, read_only=True)
    rows = list(reader.worksheets[0].values)
    reader.close()
    header = [str(h) for h in rows[0]]
    roles = match_header(header)
    assert roles.usable and (roles.log_id, roles.feedback, roles.score, roles.reason) == (
        0,
        col["feedback"] - 1,
        col["score"] - 1,
        col["reason"] - 1,
    )
    cells = pl.DataFrame(
        [["" if v is None else str(v) for v in row] for row in rows[1:]],
        schema=header,
        orient="row",
    )
    labels = validate_labels(cells.select("log_id", "feedback", "score", "reason"))
    assert labels.select("feedback", "score", "reject").rows() == [
        (1, None, None),
        (-1, 20.0, None),
        (None, None, "no_label"),
    ]


def test_csv_is_neutralised_and_opens_in_excel_with_its_emoji(tmp_path: Path) -> None:
    """The CSV starts with a UTF-8 BOM; formula-leading cells get an apostrophe, numbers do not."""
    out = write_csv(review(), tmp_path / "review.csv")
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")
    with out.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[1]["metadata"] == "'" + HOSTILE and rows[1]["request_text"] == "'@SUM(A1)"
    assert rows[1]["current_feedback"] == "-1" and rows[0]["response_text"] == "Sure.\nHere is how."
    assert rows[0]["created_at"] == "2026-11-03T12:00:00.000Z"
    assert list(rows[0])[:6] == ["log_id", "request_text", "response_text", *EDITABLE]


def test_an_empty_sample_still_writes_a_sheet_with_its_header(tmp_path: Path) -> None:
    """Zero rows: a header and no validation ranges to break the file."""
    out = write_xlsx(review().clear(), tmp_path / "empty.xlsx")
    sheet = openpyxl.load_workbook(out).worksheets[0]
    assert sheet["A1"].value == "log_id" and sheet.max_row == 1


def test_the_format_comes_from_the_name_and_a_mismatch_is_refused() -> None:
    """review.xlsx is xlsx; --format xlsx with review.csv, or review.txt alone, is a usage error."""
    assert sheet_format(Path("r.XLSX")) == "xlsx" and sheet_format(Path("r.csv")) == "csv"
    assert sheet_format(Path("review"), "xlsx") == "xlsx"
    with pytest.raises(UsageError, match=r"call it r\.xlsx"):
        sheet_format(Path("r.csv"), "xlsx")
    with pytest.raises(UsageError, match=r"\.csv or \.xlsx"):
        sheet_format(Path("r.txt"))
