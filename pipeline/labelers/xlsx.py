"""One Excel workbook (.xlsx) as analysts fill it in -> the same raw tables as a CSV file.

Read with openpyxl (``read_only=True``: rows stream, ``data_only=True``: a formula gives the value
Excel last computed). Every sheet whose header has a log id column and a feedback or score column
(the same names as in CSV, `csvfile.match_header`) is read, in workbook order; the other sheets are
named as not read, with the reason. When no sheet qualifies the file is refused (InputError), naming
what each sheet has.

The header is the first of a sheet's first ``HEADER_ROWS`` rows that names the columns, so a title
row above it (merged across the columns, say) is fine; rows above the header are not rows. A merged
header cell names only its first column (openpyxl leaves the others empty): those columns are
ignored like any unnamed column. Rows whose cells are all empty are not rows (not counted), like
blank lines in a CSV. A row's line is its row number in the sheet, as Excel shows it.

Cells become the text a CSV export would hold, so `pipeline.labelers.values` reads them alike:
numbers stored as text stay as written (``"85"``), numbers lose a ``.0`` (``-1.0`` -> ``-1``, a
score of ``72.5`` stays ``72.5``), dates are ISO 8601, booleans TRUE/FALSE. A cell formatted as a
percentage holds a fraction (85 % is 0.85): it is read as the fraction, so type scores as numbers.
"""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime, time
from typing import Any

from openpyxl import load_workbook
from openpyxl.utils.exceptions import InvalidFileException

from pipeline.errors import InputError
from pipeline.labelers.csvfile import (
    FEEDBACK_ALIASES,
    LOG_ID_ALIASES,
    Columns,
    Sheets,
    Table,
    match_header,
)

HEADER_ROWS = 10  # the header is looked for in a sheet's first rows
ENCODING = "xlsx"  # what the file report shows as the encoding


def _text(value: Any) -> str:
    """A cell's value as the text a CSV export holds."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def _header(rows: list[list[str]], join_key: str) -> tuple[int, Columns] | str:
    """(index of the header row, its columns), or why the sheet has none."""
    keyed = False
    for index, row in enumerate(rows):
        columns = match_header(row, join_key)
        if columns.usable:
            return index, columns
        keyed = keyed or columns.log_id is not None or columns.join is not None
    if keyed:
        return (
            "it has a log id column but no feedback (" + ", ".join(FEEDBACK_ALIASES) + ") or score"
        )
    return "no log id column (" + ", ".join(LOG_ID_ALIASES) + f") in its first {HEADER_ROWS} rows"


def _sheet(name: str, rows: Any, join_key: str) -> Table | str:
    """One sheet's rows (an iterator of value tuples from row 1) -> its Table, or why not."""
    head: list[list[str]] = []
    for values in rows:
        head.append([_text(v) for v in values])
        if len(head) == HEADER_ROWS:
            break
    found = _header(head, join_key)
    if isinstance(found, str):
        return found
    at, columns = found
    header = [h.strip() for h in head[at]]
    while header and not header[-1]:
        header.pop()
    width = len(header)
    out: list[list[str]] = []
    lines: list[int] = []
    extra: list[str | None] = []
    pending = iter(head[at + 1 :])

    def all_rows() -> Any:
        yield from pending
        for values in rows:
            yield [_text(v) for v in values]

    # The one Python loop: openpyxl hands over rows one by one.
    for number, cells in enumerate(all_rows(), start=at + 2):
        if not "".join(cells).strip():
            continue
        beyond = [c for c in cells[width:] if c.strip()]
        extra.append(",".join(beyond) if beyond else None)
        out.append((cells + [""] * width)[:width])
        lines.append(number)
    return Table(ENCODING, "", header, columns, out, lines, extra, None, name)


def read_workbook(data: bytes, *, join_key: str = "log_id") -> Sheets:
    """Parse an .xlsx file's bytes. Raises InputError when no sheet can be used."""
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise InputError(f"not readable as an .xlsx workbook: {exc}") from None
    try:
        tables: list[Table] = []
        skipped: list[tuple[str, str]] = []
        for sheet in book.worksheets:
            if hasattr(sheet, "reset_dimensions"):
                sheet.reset_dimensions()  # the stored size may be wrong: read every cell there is
            read = _sheet(sheet.title, sheet.iter_rows(min_row=1, values_only=True), join_key)
            if isinstance(read, str):
                skipped.append((sheet.title, read))
            else:
                tables.append(read)
    finally:
        book.close()
    if not tables:
        raise InputError(
            "no sheet has a usable header: "
            + "; ".join(f"sheet {name!r}: {why}" for name, why in skipped)
        )
    return Sheets(tables, skipped)
