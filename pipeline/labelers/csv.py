"""The analysts' CSV inbox: every `.csv`/`.tsv` dropped in the job's inbox folder is read, validated,
joined to logs, and applied exactly once.

Reading is tolerant: UTF-8 with or without BOM, UTF-16 with BOM (Excel's "Unicode text"), else
Windows-1252/Latin-1; the delimiter (`,` `;` or tab) is sniffed and confirmed by the header; header
names match case-, space-, hyphen- and underscore-insensitively:

    log id     log_id, cf-aig-log-id, log, id     (or the metadata key named by [labels.csv] join_key)
    feedback   feedback, rating, thumbs, label
    score      score
    reason     reason, comment, note, notes       (optional; becomes the label's reason)

Other columns are ignored. Values are read as in `pipeline.labelers.values`. Blank lines and rows whose
cells are all empty are not rows.

Accounting, per file: ``rows = accepted + rejected`` and ``accepted = labels + duplicates +
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

Each file is applied once. Before a file is used, its sha256 goes into ``processed/manifest.json``
with the run id; then the file moves to ``processed/<run_id>/``. The same content dropped again is
reported as ``already_applied`` and moved there too, not applied. A file that cannot be read at all
moves to ``rejected/<run_id>/`` with a ``.reason.txt`` beside it, and the run goes on. A re-run of the
same run (after a crash) reads again the files the manifest says that run processed, so no label is
lost and none is applied twice. A dry run (``consume=False``) reads the inbox in place and changes
nothing there: no manifest entry, no move, no rejects file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.config import CsvLabelsConfig
from pipeline.errors import InputError
from pipeline.labelers.base import (
    ROW,
    LabelContext,
    LabelerOutput,
    empty_labels,
    last_word_wins,
    to_label_frame,
)
from pipeline.labelers.csvfile import Table, read_table, rejects_csv, table_frame
from pipeline.labelers.values import validate_labels
from pipeline.state.store import write_json_atomic, write_text_atomic

EXTENSIONS = (".csv", ".tsv")
MANIFEST = "manifest.json"


# ---------------------------------------------------------------------------------------------
# Joining rows to logs


def metadata_index(known_logs: pl.LazyFrame, key: str) -> pl.DataFrame:
    """value of metadata[key] -> the log id when exactly one log has it, and how many logs do."""
    path = "$['" + key.replace("\\", "\\\\").replace("'", "\\'") + "']"
    return (
        known_logs.select(
            pl.col("id"), pl.col("metadata").str.json_path_match(path).alias("join_value")
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
    frame = validate_labels(frame)
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


# ---------------------------------------------------------------------------------------------
# The inbox


@dataclass
class FileReport:
    """What happened to one file in this run."""

    name: str
    sha256: str
    status: str  # applied | already_applied | unreadable | missing | skipped (not a label file)
    path: str = ""  # where the file is now, relative to the inbox
    encoding: str = ""
    delimiter: str = ""
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    labels: int = 0
    duplicates: int = 0
    superseded: int = 0
    outside_window: int = 0
    rejects_path: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["delimiter"] = {"\t": "tab"}.get(self.delimiter, self.delimiter)
        return out


@dataclass
class Manifest:
    """processed/manifest.json: sha256 -> how and when that content was applied, plus events
    (already_applied drops, unreadable files) so a re-run of a run can report them again."""

    path: Path
    applied: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, inbox: Path) -> Manifest:
        path = inbox / "processed" / MANIFEST
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            raise InputError(
                f"the inbox manifest {path} cannot be read ({exc}); restore it from a backup, or "
                "remove it to apply every file in processed/ again"
            ) from None
        return cls(path, dict(raw.get("applied", {})), list(raw.get("events", [])))

    def save(self) -> None:
        write_json_atomic({"version": 1, "applied": self.applied, "events": self.events}, self.path)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _free_name(folder: Path, name: str) -> Path:
    path = folder / name
    n = 2
    while path.exists():
        stem, suffix = os.path.splitext(name)
        path = folder / f"{stem}-{n}{suffix}"
        n += 1
    return path


def _not_read(inbox: Path) -> list[FileReport]:
    """Entries of the inbox that are not read as label files, each with the reason, so that an
    analyst's file in the wrong format is named in the run's summary and report, not ignored."""
    out: list[FileReport] = []
    for path in sorted(inbox.iterdir()):
        name = path.name
        if name.startswith((".", "~$")) or name in ("processed", "rejected"):
            continue  # hidden files, Excel's lock files, the inbox's own folders
        if path.is_file() and path.suffix.lower() in EXTENSIONS:
            continue
        if path.is_dir():
            why = "a folder, not a file: labels are read from files directly in the inbox"
        elif not path.is_file():
            why = "not a regular file"
        else:
            why = (
                f"{path.suffix or 'no extension'}: only {' and '.join(EXTENSIONS)} files are read; "
                "save it as CSV"
            )
        out.append(FileReport(name, "", "skipped", path=name, detail=f"left in the inbox: {why}"))
    return out


def _inbox_files(inbox: Path) -> list[Path]:
    return sorted(
        p
        for p in inbox.iterdir()
        if p.is_file()
        and p.suffix.lower() in EXTENSIONS
        and not p.name.startswith((".", "~$"))  # hidden files, Excel's lock files
    )


@dataclass
class _Pending:
    name: str  # as dropped
    sha256: str
    rel: str  # where it is now, relative to the inbox; its file name is unique within the run
    data: bytes
    table: Table | None = None

    @property
    def file(self) -> str:
        return Path(self.rel).name


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
        fields = FileReport.__dataclass_fields__
        reports: list[FileReport] = [
            FileReport(**{k: v for k, v in e.items() if k in fields})
            for e in manifest.events
            if e.get("run_id") == run_id
        ]
        if self.consume:
            pending = self._collect(inbox, manifest, run_id, now, reports)
        else:
            pending = self._peek(inbox, manifest, reports)
        index: pl.DataFrame | None = None
        parsed: list[tuple[_Pending, Table, FileReport, pl.DataFrame]] = []
        for order, item in enumerate(sorted(pending, key=lambda p: (p.name, p.sha256))):
            report = FileReport(item.name, item.sha256, "applied", path=item.rel)
            reports.append(report)
            try:
                table = item.table or self._read(item.data, item.name)
            except InputError as exc:  # was readable when taken; changed on disk since
                report.status, report.detail = "unreadable", str(exc)
                continue
            report.encoding, report.delimiter = table.encoding, table.delimiter
            if index is None and table.columns.join is not None and self.known_logs is not None:
                index = metadata_index(self.known_logs, self.config.join_key)
            frame = validate_rows(table_frame(table), index).with_columns(
                pl.lit(order).alias("file_order"), pl.lit(item.file).alias("file")
            )
            parsed.append((item, table, report, frame))
        labels = self._combine(parsed, logs, inbox, now)
        reports += _not_read(inbox)
        reports.sort(key=lambda r: (r.name, r.sha256))
        return LabelerOutput(labels, {**_summary(reports), "inbox_consumed": self.consume})

    def _peek(self, inbox: Path, manifest: Manifest, reports: list[FileReport]) -> list[_Pending]:
        """The inbox files a real run would apply, read in place: no manifest entry, no move."""
        pending: list[_Pending] = []
        for path in _inbox_files(inbox):
            data = path.read_bytes()
            sha = _sha256(data)
            if sha in manifest.applied or any(p.sha256 == sha for p in pending):
                reports.append(FileReport(path.name, sha, "already_applied", path=path.name))
                continue
            try:
                table = self._read(data, path.name)
            except InputError as exc:
                reports.append(FileReport(path.name, sha, "unreadable", path.name, detail=str(exc)))
                continue
            pending.append(_Pending(path.name, sha, path.name, data, table))
        return pending

    def _read(self, data: bytes, name: str) -> Table:
        tsv = name.lower().endswith(".tsv")
        return read_table(data, join_key=self.config.join_key, tab_first=tsv)

    def _collect(
        self,
        inbox: Path,
        manifest: Manifest,
        run_id: str,
        now: datetime,
        reports: list[FileReport],
    ) -> list[_Pending]:
        """Files this run applies: those it already took (resumed), then new ones in the inbox."""
        pending: list[_Pending] = []
        for sha, entry in manifest.applied.items():
            if entry.get("run_id") != run_id:
                continue
            path = inbox / entry["path"]
            if path.exists():
                pending.append(_Pending(entry["name"], sha, entry["path"], path.read_bytes()))
        taken = {p.sha256 for p in pending}
        target = inbox / "processed" / run_id
        for path in _inbox_files(inbox):
            data = path.read_bytes()
            sha = _sha256(data)
            known = manifest.applied.get(sha)
            if known is not None and known.get("run_id") == run_id and sha not in taken:
                # This run recorded the file, then stopped before (or after) moving it.
                dest = inbox / known["path"]
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, dest)
                pending.append(_Pending(known["name"], sha, known["path"], data))
                taken.add(sha)
                continue
            if known is not None or sha in taken:
                first = known or {"run_id": run_id, "name": path.name}
                detail = (
                    f"the same content was applied by run {first['run_id']} "
                    f"(as {first['name']}); not applied again"
                )
                reports.append(
                    self._set_aside(
                        path, sha, "already_applied", detail, target, inbox, manifest, run_id, now
                    )
                )
                continue
            try:
                table = self._read(data, path.name)
            except InputError as exc:
                folder = inbox / "rejected" / run_id
                report = self._set_aside(
                    path, sha, "unreadable", str(exc), folder, inbox, manifest, run_id, now
                )
                write_text_atomic(
                    f"{path.name} was not applied: {exc}\n",
                    inbox / (report.path + ".reason.txt"),
                )
                reports.append(report)
                continue
            dest = _free_name(target, path.name)
            rel = dest.relative_to(inbox).as_posix()
            manifest.applied[sha] = {
                "name": path.name,
                "run_id": run_id,
                "path": rel,
                "applied_at": now.isoformat(),
            }
            manifest.save()  # first the manifest, then the move: a crash in between is resumable
            target.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
            pending.append(_Pending(path.name, sha, rel, data, table))
            taken.add(sha)
        return pending

    @staticmethod
    def _set_aside(
        path: Path,
        sha: str,
        status: str,
        detail: str,
        folder: Path,
        inbox: Path,
        manifest: Manifest,
        run_id: str,
        now: datetime,
    ) -> FileReport:
        """Move a file that is not applied into `folder` and remember why in the manifest."""
        dest = _free_name(folder, path.name)
        rel = dest.relative_to(inbox).as_posix()
        manifest.events.append(
            {
                "name": path.name,
                "sha256": sha,
                "status": status,
                "path": rel,
                "detail": detail,
                "run_id": run_id,
                "at": now.isoformat(),
            }
        )
        manifest.save()
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        return FileReport(path.name, sha, status, path=rel, detail=detail)

    def _combine(
        self,
        parsed: list[tuple[_Pending, Table, FileReport, pl.DataFrame]],
        logs: pl.DataFrame,
        inbox: Path,
        now: datetime,
    ) -> pl.DataFrame:
        if not parsed:
            return empty_labels()
        columns = ["file", "file_order", "line", "log_id", "feedback", "score", "reason", "reject"]
        rows = pl.concat([f.select(columns) for *_, f in parsed], how="vertical_relaxed")
        accepted = last_word_wins(rows.filter(pl.col("reject").is_null()), ["file_order", "line"])
        index = logs.select(
            pl.col("id").alias("log_id"), pl.int_range(pl.len(), dtype=pl.UInt32).alias(ROW)
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
        for item, table, report, frame in parsed:
            counts = frame.filter(pl.col("reject").is_not_null())["reject"].value_counts()
            report.rows = frame.height
            report.rejected_by_reason = dict(
                sorted(zip(counts["reject"], counts["count"], strict=True))
            )
            report.rejected = sum(report.rejected_by_reason.values())
            report.accepted = report.rows - report.rejected
            for key, value in outcomes.get(item.file, {}).items():
                setattr(report, key, int(value))
            if report.rejected and self.consume:
                rel = Path(item.rel)
                rejects = rel.with_name(rel.stem + ".rejects.csv")
                write_text_atomic(
                    rejects_csv(frame, table.header, table.delimiter), inbox / rejects
                )
                report.rejects_path = rejects.as_posix()
        winners = winners.with_columns(
            source=pl.lit("csv:") + pl.col("file"),
            reason=pl.when(pl.col("reason").str.strip_chars().fill_null("") != "")
            .then(pl.col("reason").str.strip_chars())
            .otherwise(pl.format("analyst label, {} line {}", pl.col("file"), pl.col("line"))),
        )
        return to_label_frame(winners.sort("log_id"), now)


def _summary(reports: list[FileReport]) -> dict[str, Any]:
    applied = [r for r in reports if r.status == "applied"]
    by_reason: dict[str, int] = {}
    for r in applied:
        for reason, n in r.rejected_by_reason.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    return {
        "files": len(applied),
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
