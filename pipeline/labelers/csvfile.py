"""One CSV file as analysts write it -> rows of raw strings, and rejected rows back out as CSV.

Tolerant reading: UTF-8 with or without BOM, UTF-16 with BOM (Excel's "Unicode text"), else
Windows-1252, else Latin-1; the delimiter (`,` `;` or tab) is sniffed by `csv.Sniffer` and confirmed
by the header, whose names match case-, space-, hyphen- and underscore-insensitively against the
aliases below. The `csv` module does the parsing; values are checked later, vectorised
(`pipeline.labelers.values`).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl

from pipeline.errors import InputError

DELIMITERS = (",", ";", "\t")
LOG_ID_ALIASES = ("log_id", "cf_aig_log_id", "log", "id")
FEEDBACK_ALIASES = ("feedback", "rating", "thumbs", "label")
SCORE_ALIASES = ("score",)
REASON_ALIASES = ("reason", "comment", "note", "notes")


def normalize_header(name: str) -> str:
    """'  Log ID ' -> 'log_id'; 'CF-AIG-Log-ID' -> 'cf_aig_log_id'."""
    return re.sub(r"[\s\-_]+", "_", name.replace("\ufeff", "").strip().lower()).strip("_")


@dataclass(frozen=True)
class Columns:
    """Which header position plays which role (None: absent)."""

    log_id: int | None
    join: int | None
    feedback: int | None
    score: int | None
    reason: int | None

    @property
    def usable(self) -> bool:
        has_key = self.log_id is not None or self.join is not None
        return has_key and (self.feedback is not None or self.score is not None)


def match_header(header: list[str], join_key: str = "log_id") -> Columns:
    names = [normalize_header(h) for h in header]

    def find(aliases: Iterable[str]) -> int | None:
        for alias in aliases:
            if alias in names:
                return names.index(alias)
        return None

    join = normalize_header(join_key)
    return Columns(
        log_id=find(LOG_ID_ALIASES),
        join=None if join in LOG_ID_ALIASES else find([join]),
        feedback=find(FEEDBACK_ALIASES),
        score=find(SCORE_ALIASES),
        reason=find(REASON_ALIASES),
    )


@dataclass(frozen=True)
class Table:
    """A CSV file as read: its header, its rows (cells padded to the header's width), the line on
    which each row starts, and any non-empty cells beyond the header's width."""

    encoding: str
    delimiter: str
    header: list[str]
    columns: Columns
    rows: list[list[str]]
    lines: list[int]
    extra: list[str | None]


def decode(data: bytes) -> tuple[str, str]:
    """Bytes -> (text, encoding name). Never fails: Latin-1 reads any byte."""
    if data.startswith(codecs.BOM_UTF8):
        with contextlib.suppress(UnicodeDecodeError):
            return data[len(codecs.BOM_UTF8) :].decode("utf-8"), "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode("utf-16"), "utf-16"
    for encoding in ("utf-8", "cp1252"):
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode(encoding), encoding
    return data.decode("latin-1"), "latin-1"


def read_table(data: bytes, *, join_key: str = "log_id", tab_first: bool = False) -> Table:
    """Parse a CSV file's bytes. Raises InputError when it cannot be used at all."""
    if data.startswith(b"PK\x03\x04"):
        raise InputError("this is a spreadsheet (xlsx/zip), not CSV: save it as 'CSV UTF-8'")
    text, encoding = decode(data)
    if "\x00" in text:
        raise InputError("this looks like a binary file (it contains NUL bytes), not CSV")
    if not text.strip():
        raise InputError("the file is empty")
    first = next(line for line in text.splitlines() if line.strip())
    guesses: list[str] = []
    with contextlib.suppress(csv.Error):
        guesses.append(csv.Sniffer().sniff(text[:65536], delimiters="".join(DELIMITERS)).delimiter)
    guesses += ["\t", ",", ";"] if tab_first else [",", ";", "\t"]
    for delimiter in dict.fromkeys(guesses):
        header = next(csv.reader([first], delimiter=delimiter))
        columns = match_header(header, join_key)
        if columns.usable:
            break
    else:
        raise InputError(
            "its header has no usable columns: it needs a log id column ("
            + ", ".join(LOG_ID_ALIASES)
            + (f", or {join_key}" if normalize_header(join_key) not in LOG_ID_ALIASES else "")
            + ") and a feedback ("
            + ", ".join(FEEDBACK_ALIASES)
            + ") or score column; found: "
            + ", ".join(repr(h) for h in next(csv.reader([first], delimiter=guesses[0])))
        )
    try:
        return _rows(text, encoding, delimiter, columns)
    except csv.Error as exc:
        raise InputError(f"not readable as CSV: {exc}") from None


def _rows(text: str, encoding: str, delimiter: str, columns: Columns) -> Table:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] = []
    rows: list[list[str]] = []
    lines: list[int] = []
    ragged: dict[int, str] = {}  # row index -> non-empty cells beyond the header
    previous = width = 0
    for record in reader:  # the one Python loop: the csv module hands over rows one by one
        start, previous = previous + 1, reader.line_num
        if not "".join(record).strip():
            continue
        if not header:
            header = [h.replace("\ufeff", "").strip() for h in record]
            width = len(header)
            continue
        if len(record) != width:
            beyond = [c for c in record[width:] if c.strip()]
            if beyond:
                ragged[len(rows)] = delimiter.join(beyond)
            record = (record + [""] * width)[:width]
        rows.append(record)
        lines.append(start)
    extra: list[str | None] = [None] * len(rows)
    for index, cells in ragged.items():
        extra[index] = cells
    return Table(encoding, delimiter, header, columns, rows, lines, extra)


def table_frame(table: Table) -> pl.DataFrame:
    """One row per CSV row: line, log_id, join, feedback, score, reason (raw strings), reject
    (too_many_fields or null), and the original cells as orig_<i>."""
    width = len(table.header)
    schema = {f"orig_{i}": pl.String for i in range(width)}
    frame = pl.DataFrame(table.rows, schema=schema, orient="row")
    c = table.columns

    def cell(index: int | None) -> pl.Expr:
        return pl.col(f"orig_{index}") if index is not None else pl.lit(None, pl.String)

    return frame.with_columns(
        pl.Series("line", table.lines, dtype=pl.Int64),
        cell(c.log_id).alias("log_id"),
        cell(c.join).alias("join"),
        cell(c.feedback).alias("feedback_raw"),
        cell(c.score).alias("score_raw"),
        cell(c.reason).alias("reason"),
        pl.Series("extra", table.extra, dtype=pl.String),
    ).with_columns(
        pl.col("feedback_raw").alias("feedback"),
        pl.col("score_raw").alias("score"),
        pl.when(pl.col("extra").is_not_null())
        .then(pl.lit("too_many_fields"))
        .otherwise(None)
        .alias("reject"),
    )


_DETAIL = {
    "too_many_fields": ("cells beyond the header: {}", "extra"),
    "missing_key": ("no log id in this row", None),
    "bad_log_id": ("{} is not a log id (spaces inside, or too long)", "log_id"),
    "bad_feedback": ("feedback {} is not one of 1/-1, up/down, good/bad, 👍/👎", "feedback_raw"),
    "bad_score": ("score {} is not a number from 0 to 100", "score_raw"),
    "no_label": ("neither feedback nor score is given", None),
    "unknown_key": ("no extracted log has this value in its metadata: {}", "log_id"),
    "ambiguous_key": ("several extracted logs have this value in their metadata: {}", "log_id"),
    "not_sent": ("the labeler was not sent log {}", "log_id"),
}


def _detail() -> pl.Expr:
    expr: Any = pl
    for reason, (text, column) in _DETAIL.items():
        value = pl.format(text, pl.col(column)) if column else pl.lit(text)
        expr = expr.when(pl.col("reject") == reason).then(value)
    result: pl.Expr = expr.otherwise(pl.col("reject"))
    return result


def rejects_csv(frame: pl.DataFrame, header: list[str], delimiter: str) -> str:
    """The rejects file's text: reject_line, reject_reason, reject_detail, then the original cells."""
    rejected = frame.filter(pl.col("reject").is_not_null()).sort("line")
    out = rejected.select(
        pl.col("line").alias("reject_line"),
        pl.col("reject").alias("reject_reason"),
        _detail().alias("reject_detail"),
        *[pl.col(f"orig_{i}").alias(f"orig_{i}") for i in range(len(header))],
    )
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(["reject_line", "reject_reason", "reject_detail", *header])
    writer.writerows(out.iter_rows())
    return buffer.getvalue()
