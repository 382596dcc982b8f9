"""The analysts' CSV labeler: every `.csv`/`.tsv`/`.xlsx` dropped in the job's inbox folder is read,
validated, joined to logs, and applied exactly once (the folder itself, its manifest and where files
move: `pipeline.labelers.inbox`). A workbook's sheets are read as CSV tables
(`pipeline.labelers.xlsx`): each sheet read has its own accounting and rejects file
(``<name>.<sheet>.rejects.csv``, with ``reject_sheet``; ``reject_line`` is the sheet's row number),
and its labels' source is ``csv:<file>#<sheet>`` (where the label came from, as precisely as a CSV
file's name says it).

Reading is tolerant: UTF-8 with or without BOM, UTF-16 with BOM (Excel's "Unicode text"), else the
encoding charset-normalizer detects (UTF-16 without BOM, Shift-JIS...), else Windows-1252/Latin-1;
the delimiter (`,` `;` or tab) is sniffed and confirmed by the header; header names match case-,
space-, hyphen- and underscore-insensitively:

    log id     log_id, cf-aig-log-id, log, id, then cf-aig-request-id, request_id
               (or the metadata key named by [labels.csv] join_key)
    feedback   feedback, rating, thumbs, label
    score      score
    reason     reason, comment, note, notes       (optional; becomes the label's reason)

Other columns are ignored. Values are read as in `pipeline.labelers.values`. Log ids (and join-key
values) compare in their canonical spelling (`pipeline.ids`): an upper-case UUIDv7 or a lower-case
ULID names the same log as the extract's.

Rows are the file's physical records: one per non-blank line, except that a properly quoted cell
with line breaks keeps its row on several lines. Blank lines and rows whose cells are all empty are
not rows. A quote that never closes properly does not swallow the rows after it: the csv module
reads strictly (a quote followed by text, or the end of the file inside quotes, is an error), and a
quoted cell that spans more than 100 lines or has a line inside it that reads as a row of its own
is a runaway too. Then that stretch is read line by line, and each line whose quotes do not pair
up is rejected as ``broken_quote`` on its own line number.

Accounting, per file (per sheet of a workbook): ``rows = accepted + rejected`` and ``accepted = labels + duplicates +
superseded``. Rejected rows go to ``<name>.rejects.csv`` next to the processed file, with
``reject_line`` (the line in the file where the row starts; the header is line 1, so it is the
spreadsheet row number), ``reject_reason`` (a code from `values.REASONS`), ``reject_detail`` and the
row's original cells under the original headers — fix them there and drop that file back in the inbox.

Several rows for one log — ONE rule: **the last word wins**. Within a file the later row wins; across
the files of one run, files are applied in name order (name them with a date prefix if order matters)
and the later file wins. Earlier rows with the same label count as ``duplicates``; earlier rows with a
different label count as ``superseded``. Both are accepted (they are valid rows); only the winning
row becomes a label. Labels from files applied by earlier runs are not re-applied.

Join key: rows name a log by its id, or — when ``join_key`` names a metadata key such as
``request_id`` — by that key's value in a column of that name. The value is looked up in the metadata
of every extracted log of the gateway: no match is rejected as ``unknown_key``, several matches as
``ambiguous_key`` (never guessed). Log ids themselves are not checked against the extract: labels for
logs outside the window (old logs) are kept, and the plan looks them up.

A dry run (``consume=False``) reads the inbox in place and changes nothing there: no manifest entry,
no move, no rejects file.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl

from pipeline.config import CsvLabelsConfig
from pipeline.errors import InputError
from pipeline.ids import canonical_id_expr
from pipeline.labelers.base import (
    ROW,
    LabelContext,
    LabelerOutput,
    empty_labels,
    last_word_wins,
    to_label_frame,
)
from pipeline.labelers.csvfile import Sheets, Table, read_table, rejects_csv, table_frame
from pipeline.labelers.inbox import FileReport, Manifest, Pending, collect, not_read, peek
from pipeline.labelers.values import validate_labels
from pipeline.labelers.xlsx import read_workbook
from pipeline.state.store import write_text_atomic

ZIP = b"PK\x03\x04"  # an .xlsx is a zip file: read as a workbook whatever its name

# ---------------------------------------------------------------------------------------------
# Joining rows to logs


def metadata_index(known_logs: pl.LazyFrame, key: str) -> pl.DataFrame:
    """value of metadata[key] -> the log id when exactly one log has it, and how many logs do."""
    path = "$['" + key.replace("\\", "\\\\").replace("'", "\\'") + "']"
    return (
        known_logs.select(
            pl.col("id"),
            canonical_id_expr(pl.col("metadata").str.json_path_match(path)).alias("join_value"),
        )
        .filter(pl.col("join_value").is_not_null())
        .group_by("join_value")
        .agg(pl.col("id").first().alias("join_id"), pl.len().cast(pl.Int64).alias("join_matches"))
        .collect()
    )


def validate_rows(frame: pl.DataFrame, index: pl.DataFrame | None) -> pl.DataFrame:
    """Parse values, resolve join keys; adds feedback, score (typed), log_id (resolved), reject."""
    joined = (frame["join"].str.strip_chars().fill_null("") != "").any()
    direct = pl.col("log_id").str.strip_chars()
    frame = frame.with_columns(
        via_join=(direct.is_null() | (direct == "")) & pl.col("join").is_not_null(),
    ).with_columns(
        log_id=pl.when(pl.col("via_join")).then(pl.col("join")).otherwise(pl.col("log_id"))
    )
    # Ids (and join values) compare in their canonical spelling: an upper-case UUID or a
    # lower-case ULID names the same log (pipeline.ids).
    frame = validate_labels(frame).with_columns(canonical_id_expr(pl.col("log_id")))
    if not joined:
        return frame
    if index is None:
        index = pl.DataFrame(
            schema={"join_value": pl.String, "join_id": pl.String, "join_matches": pl.Int64}
        )
    frame = frame.join(
        index, left_on="log_id", right_on="join_value", how="left", maintain_order="left"
    )
    ok = pl.col("reject").is_null() & pl.col("via_join")
    return frame.with_columns(
        reject=pl.when(ok & pl.col("join_matches").is_null())
        .then(pl.lit("unknown_key"))
        .when(ok & (pl.col("join_matches") > 1))
        .then(pl.lit("ambiguous_key"))
        .otherwise(pl.col("reject")),
        log_id=pl.when(pl.col("via_join") & (pl.col("join_matches") == 1))
        .then(pl.col("join_id"))
        .otherwise(pl.col("log_id")),
    )


class CsvLabeler:
    """The inbox labeler. `known_logs` (id, metadata of every extracted log) resolves join keys."""

    kind = "csv"

    def __init__(
        self,
        config: CsvLabelsConfig,
        known_logs: pl.LazyFrame | None = None,
        *,
        consume: bool = True,
    ) -> None:
        self.config = config
        self.name = "inbox"
        self.known_logs = known_logs
        self.consume = consume  # False (dry runs): read the files where they are, change nothing

    async def label(self, logs: pl.DataFrame, context: LabelContext) -> LabelerOutput:
        return self.run(logs, context.run_id, context.now)

    def run(self, logs: pl.DataFrame, run_id: str, now: datetime) -> LabelerOutput:
        """Synchronous body of `label` (the inbox is local files)."""
        inbox = self.config.inbox
        inbox.mkdir(parents=True, exist_ok=True)
        manifest = Manifest.load(inbox)
        reports = manifest.reports(run_id)
        if self.consume:
            pending = collect(inbox, manifest, run_id, now, reports, self._read)
        else:
            pending = peek(inbox, manifest, reports, self._read)
        index: pl.DataFrame | None = None
        parsed: list[Parsed] = []
        for item in sorted(pending, key=lambda p: (p.name, p.sha256)):
            try:
                read = item.table or self._read(item.data, item.name)
            except InputError as exc:  # was readable when taken; changed on disk since
                reports.append(
                    FileReport(item.name, item.sha256, "unreadable", item.rel, detail=str(exc))
                )
                continue
            for sheet, why in read.not_read:
                detail = f"sheet {sheet!r} not read: {why}"
                reports.append(
                    FileReport(item.name, item.sha256, "skipped", item.rel, sheet, detail=detail)
                )
            for table in read.tables:
                report = FileReport(item.name, item.sha256, "applied", item.rel, table.sheet)
                reports.append(report)
                report.encoding, report.delimiter = table.encoding, table.delimiter
                if index is None and table.columns.join is not None and self.known_logs is not None:
                    index = metadata_index(self.known_logs, self.config.join_key)
                key = item.file + (f"#{table.sheet}" if table.sheet else "")
                frame = validate_rows(table_frame(table), index).with_columns(
                    pl.lit(len(parsed)).alias("file_order"),
                    pl.lit(key).alias("file"),
                    pl.lit("row" if table.sheet else "line").alias("where"),
                )
                parsed.append(Parsed(item, table, report, frame, key))
        labels = self._combine(parsed, logs, inbox, now)
        reports += not_read(inbox)
        reports.sort(key=lambda r: (r.name, r.sha256, r.sheet))
        return LabelerOutput(labels, {**_summary(reports), "inbox_consumed": self.consume})

    def _read(self, data: bytes, name: str) -> Sheets:
        if data.startswith(ZIP) or name.lower().endswith(".xlsx"):
            return read_workbook(data, join_key=self.config.join_key)
        tsv = name.lower().endswith(".tsv")
        return Sheets([read_table(data, join_key=self.config.join_key, tab_first=tsv)])

    def _combine(
        self,
        parsed: list[Parsed],
        logs: pl.DataFrame,
        inbox: Path,
        now: datetime,
    ) -> pl.DataFrame:
        if not parsed:
            return empty_labels()
        columns = ["file", "file_order", "line", "where", "log_id", "feedback", "score", "reason"]
        rows = pl.concat(
            [p.frame.select(*columns, "reject") for p in parsed], how="vertical_relaxed"
        )
        accepted = last_word_wins(rows.filter(pl.col("reject").is_null()), ["file_order", "line"])
        index = logs.select(
            canonical_id_expr(pl.col("id")).alias("log_id"),
            pl.int_range(pl.len(), dtype=pl.UInt32).alias(ROW),
        )
        winners = accepted.filter(pl.col("outcome") == "label").join(index, on="log_id", how="left")
        outcomes = (
            accepted.group_by("file")
            .agg(
                (pl.col("outcome") == "label").sum().alias("labels"),
                (pl.col("outcome") == "duplicate").sum().alias("duplicates"),
                (pl.col("outcome") == "superseded").sum().alias("superseded"),
            )
            .join(
                winners.group_by("file").agg(pl.col(ROW).null_count().alias("outside_window")),
                on="file",
                how="left",
            )
            .rows_by_key("file", named=True, unique=True)
        )
        for item, table, report, frame, key in parsed:
            counts = frame.filter(pl.col("reject").is_not_null())["reject"].value_counts()
            report.rows = frame.height
            report.rejected_by_reason = dict(
                sorted(zip(counts["reject"], counts["count"], strict=True))
            )
            report.rejected = sum(report.rejected_by_reason.values())
            report.accepted = report.rows - report.rejected
            for name, value in outcomes.get(key, {}).items():
                setattr(report, name, int(value))
            if report.rejected and self.consume:
                rel = Path(item.rel)
                part = f".{_safe(table.sheet)}" if table.sheet else ""
                rejects = rel.with_name(f"{rel.stem}{part}.rejects.csv")
                text = rejects_csv(frame, table.header, table.delimiter or ",", table.sheet)
                write_text_atomic(text, inbox / rejects)
                report.rejects_path = rejects.as_posix()
        winners = winners.with_columns(
            source=pl.lit("csv:") + pl.col("file"),
            reason=pl.when(pl.col("reason").str.strip_chars().fill_null("") != "")
            .then(pl.col("reason").str.strip_chars())
            .otherwise(
                pl.format(
                    "analyst label, {} {} {}", pl.col("file"), pl.col("where"), pl.col("line")
                )
            ),
        )
        return to_label_frame(winners.sort("log_id"), now)


class Parsed(NamedTuple):
    """One table read this run (a CSV file, or a sheet of a workbook) and its checked rows."""

    item: Pending
    table: Table
    report: FileReport
    frame: pl.DataFrame
    key: str  # the file name, with #<sheet> for a workbook's sheet: the label's source


def _safe(sheet: str) -> str:
    """A sheet name as part of a file name."""
    return re.sub(r"[^\w.-]+", "_", sheet).strip("._") or "sheet"


def _summary(reports: list[FileReport]) -> dict[str, Any]:
    applied = [r for r in reports if r.status == "applied"]
    by_reason: dict[str, int] = {}
    for r in applied:
        for reason, n in r.rejected_by_reason.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    return {
        "files": len({r.sha256 for r in applied}),
        "rows": sum(r.rows for r in applied),
        "accepted": sum(r.accepted for r in applied),
        "rejected": sum(r.rejected for r in applied),
        "labels": sum(r.labels for r in applied),
        "duplicates": sum(r.duplicates for r in applied),
        "superseded": sum(r.superseded for r in applied),
        "outside_window": sum(r.outside_window for r in applied),
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "already_applied": sum(r.status == "already_applied" for r in reports),
        "unreadable": sum(r.status == "unreadable" for r in reports),
        "skipped": sum(r.status == "skipped" for r in reports),
        "by_file": [r.to_json() for r in reports],
    }
