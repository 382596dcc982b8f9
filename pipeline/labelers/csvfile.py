"""One CSV file as analysts write it -> rows of raw strings, and rejected rows back out as CSV.

Tolerant reading: UTF-8 with or without BOM, UTF-16 with BOM (Excel's "Unicode text"), else the
encoding charset-normalizer detects (UTF-16 without BOM, Shift-JIS, GB18030, Windows code pages),
else Windows-1252, else Latin-1; the delimiter (`,` `;` or tab) is sniffed by `csv.Sniffer` and confirmed
by the header, whose names match case-, space-, hyphen- and underscore-insensitively against the
aliases below. A file whose records are one line each of simple cells (unquoted, or quoted with
neither a quote nor the delimiter inside) is cut into rows by polars, vectorised, with no Python
object per cell (`_plain_rows`); any other file is parsed by the `csv` module, and both give the
same rows. Values are checked later, vectorised (`pipeline.labelers.values`).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import charset_normalizer
import polars as pl

from pipeline.errors import InputError
from pipeline.formulas import neutralise, neutralise_expr
from pipeline.labelers.values import FEEDBACK_WORDS, MAX_ID_LENGTH

DELIMITERS = (",", ";", "\t")
# The explicit log id names first; then Cloudflare's request-id header, which carries the same
# value as cf-aig-log-id for a request answered in one step (unless [labels.csv] join_key names it:
# then it is the join column).
LOG_ID_ALIASES = ("log_id", "cf_aig_log_id", "log", "id", "cf_aig_request_id", "request_id")
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
    explicit = LOG_ID_ALIASES[: LOG_ID_ALIASES.index("cf_aig_request_id")]
    return Columns(
        log_id=find(a for a in LOG_ID_ALIASES if a in explicit or a != join),
        join=None if join in explicit else find([join]),
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
    rejects: list[str | None] | None = None  # a reject code found while reading (broken_quote)
    sheet: str = ""  # the sheet of a workbook; "" for CSV
    # The rows already as columns (orig_<i>, line, extra, read_reject), read without a Python
    # object per cell (`_plain_rows`); `rows`, `lines` and `extra` are then empty.
    cells: pl.DataFrame | None = None


# When the detector finds several encodings equally clean, the one Excel writes on the analyst's
# system is the likelier: the Windows code pages, Western first.
PREFERRED = ("cp1252", "cp932", "gb18030", "cp949", "big5", "cp1251", "cp1250", "cp1253",
             "cp1254", "cp1255", "cp1256", "cp1257", "cp1258", "cp874")  # fmt: skip
DETECT_BYTES = 1 << 18  # the detector sees the first 256 KiB
_TIE = 0.01


def _detect(data: bytes) -> str | None:
    """The encoding charset-normalizer finds for `data` (a Python codec name), or None."""
    sample = data
    if len(data) > DETECT_BYTES:  # cut after a line break, never inside a character
        cut = data.rfind(b"\n", 0, DETECT_BYTES) + 1 or DETECT_BYTES
        if b"\x00" in data[:cut] and cut % 2:
            cut += 1  # UTF-16 LE: the line break's second byte
        sample = data[:cut]
    matches = list(charset_normalizer.from_bytes(sample))
    if not matches:
        return None
    best = min(m.chaos for m in matches)
    tied = [m for m in matches if m.chaos <= best + _TIE]

    def rank(match: Any) -> int:
        names = [match.encoding, *match.could_be_from_charset]
        return min((PREFERRED.index(n) for n in names if n in PREFERRED), default=len(PREFERRED))

    chosen = min(tied, key=rank)  # min keeps the detector's order among equals
    names = [chosen.encoding, *chosen.could_be_from_charset]
    return "cp1252" if "cp1252" in names else str(chosen.encoding)


@dataclass(frozen=True)
class Sheets:
    """What one inbox file holds: its tables (one for a CSV file, one per sheet read of a
    workbook) and the sheets not read, each with the reason."""

    tables: list[Table]
    not_read: list[tuple[str, str]] = field(default_factory=list)  # (sheet, why)


def decode(data: bytes) -> tuple[str, str]:
    """Bytes -> (text, encoding name). Never fails: Latin-1 reads any byte.

    UTF-8 first (with its BOM, then without: the fast path, no detection), then the UTF-16 BOMs,
    then whatever charset-normalizer detects (UTF-16 without BOM, Shift-JIS, GB18030, the
    Windows code pages...), then Windows-1252, then Latin-1."""
    if data.startswith(codecs.BOM_UTF8):
        with contextlib.suppress(UnicodeDecodeError):
            return data[len(codecs.BOM_UTF8) :].decode("utf-8"), "utf-8-sig"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode("utf-16"), "utf-16"
    if b"\x00" not in data:  # NUL bytes are valid UTF-8, but mean UTF-16/32 or binary
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode("utf-8"), "utf-8"
    detected = _detect(data)
    if detected is not None:
        with contextlib.suppress(UnicodeDecodeError, LookupError):
            text = data.decode(detected)
            if "\x00" not in text and any(c in text for c in (*DELIMITERS, "\n", "\r")):
                return text, detected  # a text with rows or cells in it, not decoded noise
    for encoding in ("cp1252",):
        with contextlib.suppress(UnicodeDecodeError):
            return data.decode(encoding), encoding
    return data.decode("latin-1"), "latin-1"


def _first_line(text: str) -> str:
    """The first non-blank line of a text that has one (as ``str.splitlines`` cuts lines),
    found without cutting the whole text into lines."""
    size = 1 << 16
    while True:
        lines = text[:size].splitlines()
        whole = size >= len(text)
        for line in lines if whole else lines[:-1]:  # the last may go on past `size`
            if line.strip():
                return line
        if whole:
            raise ValueError("no line that is not blank")
        size *= 4


def read_table(data: bytes, *, join_key: str = "log_id", tab_first: bool = False) -> Table:
    """Parse a CSV file's bytes. Raises InputError when it cannot be used at all."""
    if data.startswith(b"PK\x03\x04"):
        raise InputError("this is a spreadsheet (xlsx/zip), not CSV: save it as 'CSV UTF-8'")
    text, encoding = decode(data)
    if "\x00" in text:
        raise InputError("this looks like a binary file (it contains NUL bytes), not CSV")
    if not text.strip():
        raise InputError("the file is empty")
    first = _first_line(text)
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


MAX_RECORD_LINES = 100  # a quoted cell over more physical lines than this is a runaway quote
_ID_LIKE = re.compile(
    r'[^\s"]*\d[^\s"]*'
)  # a key cell: no blanks or quotes, a digit (every id format)


def _alone(line: str, delimiter: str) -> list[str]:
    """One physical line's cells, parsed on its own (an unclosed quote runs to the line's end)."""
    try:
        return next(csv.reader([line.rstrip("\r\n")], delimiter=delimiter), [])
    except csv.Error:  # a single cell beyond the csv module's field limit
        return [line.rstrip("\r\n")]


def _cell(cells: list[str], index: int | None) -> str:
    return cells[index].strip() if index is not None and index < len(cells) else ""


def _key_like(cells: list[str], columns: Columns) -> bool:
    """Is the cell in the key's position shaped like an id (no blanks or quotes, a digit)?"""
    key = _cell(cells, columns.log_id if columns.log_id is not None else columns.join)
    return len(key) <= MAX_ID_LENGTH and bool(_ID_LIKE.fullmatch(key))


def _label_like(cells: list[str], columns: Columns) -> bool:
    """Would these cells make an accepted row (a key shaped like an id, a valid label)?"""

    def cell(index: int | None) -> str:
        return _cell(cells, index)

    if not _key_like(cells, columns):
        return False
    feedback, score = cell(columns.feedback), cell(columns.score).removesuffix("%")
    if feedback and feedback.lower() not in FEEDBACK_WORDS:
        return False
    if score:
        try:
            if not 0 <= float(score.replace(",", ".")) <= 100:
                return False
        except ValueError:
            return False
    return bool(feedback or score)


def _runaway(span: list[str], delimiter: str, columns: Columns, width: int) -> bool:
    """Is this multi-line record a stray quote rather than a quoted cell with line breaks in it?
    Yes when it spans more than MAX_RECORD_LINES lines, or when a line inside it, read alone,
    is a whole row of the file that would be accepted (as wide as the header, an id-like key,
    a valid label), or starts with an id-like key and opens a quote it does not close (another
    broken row). A stray quote that the csv module cannot close cleanly is caught before."""
    if len(span) > MAX_RECORD_LINES:
        return True
    opening = ('"', delimiter + '"')
    for line in span[1:]:
        cells = _alone(line, delimiter)
        if len(cells) >= width and _label_like(cells, columns):
            return True
        broken = line.count('"') % 2 == 1 and (line.startswith('"') or opening[1] in line)
        if broken and _key_like(cells, columns):
            return True  # a key shaped like an id, then a quote that opens and never closes
    return False


def _line_wise(
    physical: list[str], start: int, end: int, delimiter: str
) -> Iterator[tuple[int, list[str], str | None]]:
    for number in range(start, end + 1):
        line = physical[number - 1]
        broken = "broken_quote" if line.count('"') % 2 else None
        yield number, _alone(line, delimiter), broken


# Characters Python's str.strip takes for blanks and polars' strip_chars does not: a text with
# one of them is read by the csv module, so that "blank" means the same either way.
_PY_ONLY_BLANKS = ("\x1c", "\x1d", "\x1e", "\x1f")


def _simple_line(delimiter: str) -> str:
    """A line of simple cells: each without a quote, or wholly quoted with neither a quote nor
    the delimiter inside (``""``, ``"up"``)."""
    d = re.escape(delimiter)
    cell = f'(?:[^"{d}]*|"[^"{d}]*")'
    return f"^{cell}(?:{d}{cell})*$"


def _plain_rows(text: str, encoding: str, delimiter: str, columns: Columns) -> Table | None:
    """`_rows` vectorised, for a text whose every line is simple cells (`_simple_line`): each
    record is then one physical line (split at \\n, \\r\\n and \\r, as the csv module
    reads them), its cells are the line split at the delimiter, quotes dropped (as the csv module
    drops them). Lines whose cells are all blank are dropped, the first left is the header; each
    later line is a row of its cells padded to the header's width, with the non-blank cells
    beyond it as `extra`: the rows, lines and extra `_rows` gives. None for any other text (a
    quote inside a cell, a quoted cell holding the delimiter or a line break, a line over the csv
    module's field limit): `_rows` then reads it with the csv module."""
    if any(c in text for c in _PY_ONLY_BLANKS):
        return None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = (
        pl.Series("text", [text], dtype=pl.String)
        .str.split("\n")
        .explode()
        .to_frame()
        .with_row_index("line", offset=1)
    )
    longest = lines.select(pl.col("text").str.len_chars().max()).item()
    if (longest or 0) > csv.field_size_limit():
        return None
    if '"' in text:
        simple = pl.col("text").str.contains(_simple_line(delimiter))
        if not lines.select(simple.all()).item():
            return None
        lines = lines.with_columns(pl.col("text").str.replace_all('"', "", literal=True))
    blank = pl.col("text").str.replace_all(delimiter, "", literal=True).str.strip_chars() == ""
    lines = lines.filter(~blank)
    if lines.height == 0:
        return Table(encoding, delimiter, [], columns, [], [], [], [])
    header = [h.replace("\ufeff", "").strip() for h in str(lines.item(0, "text")).split(delimiter)]
    width = len(header)
    parts = pl.col("text").str.splitn(delimiter, width + 1)
    rest = parts.struct.field(f"field_{width}")  # the cells beyond the header's width, if any
    beyond = (
        rest.str.split(delimiter)
        .list.eval(pl.element().filter(pl.element().str.strip_chars() != ""))
        .list.join(delimiter)
        if lines.select(rest.is_not_null().any()).item()
        else pl.lit("", pl.String)
    )
    rows = lines.slice(1).select(
        *[parts.struct.field(f"field_{i}").fill_null("").alias(f"orig_{i}") for i in range(width)],
        pl.col("line").cast(pl.Int64),
        pl.when(beyond != "").then(beyond).otherwise(None).alias("extra"),
        pl.lit(None, pl.String).alias("read_reject"),
    )
    return Table(encoding, delimiter, header, columns, [], [], [], None, cells=rows)


def _rows(text: str, encoding: str, delimiter: str, columns: Columns) -> Table:
    """The file's records -> a Table (header, rows padded to its width, their lines).

    A text of one-line records of simple cells is read vectorised (`_plain_rows`). Otherwise the
    csv module reads the records, strictly: a quote that does not close cleanly (a quote followed
    by text, the end of the file inside quotes, a cell past the field limit) is an error, and so
    is a multi-line record `_runaway` finds. Then the record's physical lines are
    read again one by one, each line one record, the lines whose quotes do not pair up are
    ``broken_quote``, and the csv module resumes after them."""
    plain = _plain_rows(text, encoding, delimiter, columns)
    if plain is not None:
        return plain
    physical = io.StringIO(text, newline="").readlines()
    total = len(physical)
    header: list[str] = []
    rows: list[list[str]] = []
    lines: list[int] = []
    rejects: dict[int, str] = {}  # row index -> a reject code found while reading
    ragged: dict[int, str] = {}  # row index -> non-empty cells beyond the header
    first = next((line for line in physical if line.strip()), "")
    width = len(_alone(first, delimiter))

    def take(start: int, record: list[str], reject: str | None) -> None:
        nonlocal header, width
        if not "".join(record).strip():
            return
        if not header:
            header = [h.replace("\ufeff", "").strip() for h in record]
            width = len(header)
            return
        if len(record) != width:
            beyond = [c for c in record[width:] if c.strip()]
            if beyond:
                ragged[len(rows)] = delimiter.join(beyond)
            record = (record + [""] * width)[:width]
        if reject is not None:
            rejects[len(rows)] = reject
        rows.append(record)
        lines.append(start)

    offset = 0
    while offset < total:
        reader = csv.reader(
            itertools.islice(physical, offset, None), delimiter=delimiter, strict=True
        )
        previous = offset
        try:
            # The one Python loop: the csv module hands over records one by one.
            for record in reader:
                start, previous = previous + 1, offset + reader.line_num
                if (
                    previous == start
                    and header
                    and len(record) == width
                    and "".join(record).strip()
                ):
                    rows.append(record)  # one whole line: the common case, nothing to check
                    lines.append(start)
                elif previous > start and _runaway(
                    physical[start - 1 : previous], delimiter, columns, width
                ):
                    for item in _line_wise(physical, start, previous, delimiter):
                        take(*item)
                else:
                    take(start, record, None)
            break
        except csv.Error:
            end = max(offset + reader.line_num, previous + 1)
            for item in _line_wise(physical, previous + 1, end, delimiter):
                take(*item)
            offset = end
    extra: list[str | None] = [None] * len(rows)
    for index, cells in ragged.items():
        extra[index] = cells
    codes: list[str | None] = [None] * len(rows)
    for index, code in rejects.items():
        codes[index] = code
    return Table(encoding, delimiter, header, columns, rows, lines, extra, codes)


def table_frame(table: Table) -> pl.DataFrame:
    """One row per CSV row: line, log_id, join, feedback, score, reason (raw strings), reject
    (too_many_fields or null), and the original cells as orig_<i>."""
    width = len(table.header)
    if table.cells is not None:
        frame = table.cells
    else:
        schema = {f"orig_{i}": pl.String for i in range(width)}
        frame = pl.DataFrame(table.rows, schema=schema, orient="row").with_columns(
            pl.Series("line", table.lines, dtype=pl.Int64),
            pl.Series("extra", table.extra, dtype=pl.String),
            pl.Series("read_reject", table.rejects or [None] * len(table.rows), dtype=pl.String),
        )
    c = table.columns

    def cell(index: int | None) -> pl.Expr:
        if index is None:
            return pl.lit(None, pl.String)
        # A rejects file dropped back: the apostrophe that neutralised a formula-leading cell
        # (pipeline.formulas) is not part of the value.
        return pl.col(f"orig_{index}").str.replace(r"^'([=+\-@\t\r])", "$1")

    return (
        frame.with_columns(
            cell(c.log_id).alias("log_id"),
            cell(c.join).alias("join"),
            cell(c.feedback).alias("feedback_raw"),
            cell(c.score).alias("score_raw"),
            cell(c.reason).alias("reason"),
        )
        .select(
            *[f"orig_{i}" for i in range(width)],
            "line",
            "log_id",
            "join",
            "feedback_raw",
            "score_raw",
            "reason",
            "extra",
            "read_reject",
        )
        .with_columns(
            pl.col("feedback_raw").alias("feedback"),
            pl.col("score_raw").alias("score"),
            pl.when(pl.col("read_reject").is_not_null())
            .then(pl.col("read_reject"))
            .when(pl.col("extra").is_not_null())
            .then(pl.lit("too_many_fields"))
            .otherwise(None)
            .alias("reject"),
        )
    )


_DETAIL = {
    "broken_quote": ("a quote in this line is not closed; the line was read on its own", None),
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


def rejects_csv(frame: pl.DataFrame, header: list[str], delimiter: str, sheet: str = "") -> str:
    """The rejects file's text: reject_line, reject_reason, reject_detail, then the original cells.
    Cells that a spreadsheet would run as a formula (``=HYPERLINK(...)``) are neutralised
    (`pipeline.formulas`); reading the file back removes the apostrophe again. For a sheet of a
    workbook, ``reject_sheet`` follows ``reject_line`` (then the sheet's row number)."""
    rejected = frame.filter(pl.col("reject").is_not_null()).sort("line")
    named = [neutralise_expr(pl.lit(sheet)).alias("reject_sheet")] if sheet else []
    out = rejected.select(
        pl.col("line").alias("reject_line"),
        *named,
        pl.col("reject").alias("reject_reason"),
        neutralise_expr(_detail()).alias("reject_detail"),
        *[neutralise_expr(pl.col(f"orig_{i}")).alias(f"orig_{i}") for i in range(len(header))],
    )
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    first = ["reject_line", *(["reject_sheet"] if sheet else []), "reject_reason", "reject_detail"]
    writer.writerow([*first, *map(neutralise, header)])
    writer.writerows(out.iter_rows())
    return buffer.getvalue()
