"""Review sheets: a frame of logs to judge, written as CSV or as an Excel workbook (.xlsx).

Both files come back through the inbox as they are: the header is in row 1 and names ``log_id``,
``feedback``, ``score`` and ``reason`` as the CSV labeler reads them (``labelers/csvfile.py``);
an ``.xlsx`` has one sheet, ``review``.

The workbook is made to be filled in: the editable columns (``EDITABLE``) are shaded and come
right after the id and the texts; ``feedback`` has a dropdown of ``FEEDBACK_CHOICES`` (each one a
value the labeler accepts), ``score`` accepts only a number from 0 to 100; the header row and the
id column stay in view (frozen panes) and the text columns are wide and wrapped.

Every string from the logs is neutralised against formula injection (``pipeline.formulas``: a
cell starting with ``=``, ``+``, ``-``, ``@``, tab or CR gets a leading apostrophe), in CSV and
xlsx alike, and the xlsx writes every string as a string cell (openpyxl would otherwise make
``=...`` a formula and ``#N/A`` an error value). Control characters that the xlsx format cannot
hold become U+FFFD. Known secrets are scrubbed from every cell (``pipeline.redaction``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Literal, cast, get_args

import polars as pl
from openpyxl import Workbook
from openpyxl.cell import Cell, WriteOnlyCell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.styles.cell_style import StyleArray
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet

from pipeline.errors import UsageError
from pipeline.formulas import neutralise_expr
from pipeline.redaction import scrub_table
from pipeline.state import store

SheetFormat = Literal["csv", "xlsx"]
FORMATS: tuple[str, ...] = get_args(SheetFormat)
SHEET_TITLE = "review"
EDITABLE = ("feedback", "score", "reason")
TEXT_COLUMNS = ("request_text", "response_text")
FEEDBACK_CHOICES = ("👍", "👎", "1", "-1")  # all in labelers.values.FEEDBACK_WORDS (a test checks)
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.3fZ"  # CSV; the xlsx holds real date-times (UTC)

_WIDTHS = {
    "log_id": 30,
    "request_text": 60,
    "response_text": 60,
    "feedback": 11,
    "score": 8,
    "reason": 30,
    "created_at": 22,
    "provider": 14,
    "model": 26,
    "metadata": 40,
}
_WRAPPED = {*TEXT_COLUMNS, "reason", "metadata"}
_ILLEGAL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"  # what openpyxl refuses in a cell
_EDIT_FILL = PatternFill("solid", start_color="FFF2CC", end_color="FFF2CC")
_HEADER_FILL = PatternFill("solid", start_color="D9D9D9", end_color="D9D9D9")
_TOP = Alignment(vertical="top")
_WRAP = Alignment(vertical="top", wrap_text=True)


def sheet_format(out: Path, fmt: str | None = None) -> SheetFormat:
    """The format asked for, or the one the file name ends in; UsageError when they disagree."""
    suffix = out.suffix.lower().lstrip(".")
    if fmt is None:
        if suffix not in FORMATS:
            raise UsageError(f"--out {out}: name the file .csv or .xlsx, or say --format csv|xlsx")
        return cast(SheetFormat, suffix)
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: use csv or xlsx")
    if suffix in FORMATS and suffix != fmt:
        raise UsageError(
            f"--format {fmt} but --out {out} ends in .{suffix}: the inbox reads a file by its "
            f"name, so call it {out.with_suffix('.' + fmt).name}"
        )
    return cast(SheetFormat, fmt)


def write_review(frame: pl.DataFrame, out: Path, fmt: SheetFormat) -> Path:
    """Write the review frame to `out` (atomically) as CSV or xlsx."""
    return write_xlsx(frame, out) if fmt == "xlsx" else write_csv(frame, out)


def safe_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Every string column neutralised against formulas and scrubbed of known secrets."""
    strings = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    neutral = frame.with_columns(neutralise_expr(pl.col(c)).alias(c) for c in strings)
    scrubbed = pl.from_arrow(scrub_table(neutral.to_arrow()))
    assert isinstance(scrubbed, pl.DataFrame)
    return scrubbed


def write_csv(frame: pl.DataFrame, out: Path) -> Path:
    """UTF-8 with a BOM, so Excel shows emoji and accents (the inbox reads either)."""
    buffer = io.StringIO()
    safe_frame(frame).write_csv(buffer, datetime_format=DATETIME_FORMAT)
    return store.write_text_atomic("\ufeff" + buffer.getvalue(), out)


def write_xlsx(frame: pl.DataFrame, out: Path) -> Path:
    """One sheet, ``review``: header in row 1, dropdown and check on the editable columns."""
    safe = safe_frame(frame).with_columns(
        pl.col(pl.String).str.replace_all(_ILLEGAL, "\ufffd"),
        pl.col(pl.Datetime).dt.replace_time_zone(None),  # Excel has no time zones: UTC
    )
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(SHEET_TITLE)
    _layout(sheet, safe.columns, safe.height)
    header = []
    for name in safe.columns:
        cell = WriteOnlyCell(sheet, name)
        cell.data_type = "s"
        cell.font = Font(bold=True)
        cell.fill = _EDIT_FILL if name in EDITABLE else _HEADER_FILL
        header.append(cell)
    sheet.append(header)
    styles = _styles(sheet)
    looks = [(styles[k], k == "edit") for k in (_kind(n, t) for n, t in safe.schema.items())]
    for row in safe.iter_rows():  # openpyxl writes cell by cell; nothing to vectorise here
        sheet.append(
            [_cell(sheet, v, style, edit=edit) for v, (style, edit) in zip(row, looks, strict=True)]
        )
    buffer = io.BytesIO()
    workbook.save(buffer)
    return store.write_bytes_atomic(buffer.getvalue(), out)


def _layout(sheet: Worksheet, columns: list[str], rows: int) -> None:
    for index, name in enumerate(columns, start=1):
        sheet.column_dimensions[get_column_letter(index)].width = _WIDTHS.get(name, 12)
    sheet.freeze_panes = "B2"  # the header row and the log id stay in view
    last = get_column_letter(len(columns))
    sheet.auto_filter.ref = f"A1:{last}{rows + 1}"
    if rows == 0:
        return
    if "feedback" in columns:
        feedback = DataValidation(
            type="list",
            formula1='"' + ",".join(FEEDBACK_CHOICES) + '"',
            allow_blank=True,
            showErrorMessage=True,
            errorTitle="feedback",
            error="Choose 👍 (good) or 👎 (bad), or 1 / -1; leave it empty for no opinion.",
            showInputMessage=True,
            promptTitle="feedback",
            prompt="👍 good, 👎 bad (or 1 / -1)",
        )
        feedback.add(_range(columns, "feedback", rows))
        sheet.data_validations.append(feedback)
    if "score" in columns:
        score = DataValidation(
            type="decimal",
            operator="between",
            formula1="0",
            formula2="100",
            allow_blank=True,
            showErrorMessage=True,
            errorTitle="score",
            error="A score is a number from 0 to 100 (no % sign).",
            showInputMessage=True,
            promptTitle="score",
            prompt="0 to 100 (no % sign)",
        )
        score.add(_range(columns, "score", rows))
        sheet.data_validations.append(score)


def _range(columns: list[str], name: str, rows: int) -> str:
    letter = get_column_letter(columns.index(name) + 1)
    return f"{letter}2:{letter}{rows + 1}"


_Kind = Literal["edit", "wrap", "datetime", "string", "plain"]


def _kind(name: str, dtype: pl.DataType) -> _Kind:
    if name in EDITABLE:
        return "edit"
    if name in _WRAPPED:
        return "wrap"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    return "string" if dtype == pl.String else "plain"


def _styles(sheet: Worksheet) -> dict[_Kind, StyleArray]:
    """One style per kind of cell, set up once: styling each cell anew is most of the time."""
    looks: dict[_Kind, tuple[PatternFill | None, Alignment, str | None]] = {
        "edit": (_EDIT_FILL, _WRAP, None),
        "wrap": (None, _WRAP, None),
        "datetime": (None, _TOP, "yyyy-mm-dd hh:mm:ss"),
        "string": (None, _TOP, None),
        "plain": (None, _TOP, None),
    }
    styles: dict[_Kind, StyleArray] = {}
    for kind, (fill, alignment, number_format) in looks.items():
        template = WriteOnlyCell(sheet)
        if fill is not None:
            template.fill = fill
        template.alignment = alignment
        if number_format is not None:
            template.number_format = number_format
        styles[kind] = template._style  # type: ignore[attr-defined]
    return styles


def _cell(sheet: Worksheet, value: Any, style: StyleArray, *, edit: bool) -> Cell | None:
    if value is None and not edit:
        return None
    cell = Cell(sheet, row=1, column=1, value=value, style_array=style)  # copies the style
    if isinstance(value, str):
        cell.data_type = "s"  # never a formula or an error value, whatever the text
    return cell
