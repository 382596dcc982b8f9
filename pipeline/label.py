"""The label stage: run the job's labelers over the run window's logs, combine by precedence, analyse.

Inputs: the window's extracted logs (``data/logs/...``), the analysts' CSV inbox, the job's rules, an
external command. Outputs in the run folder:

    labels.parquet           LABEL_SCHEMA, one row per (log_id, source); source is csv:<file>,
                             rule:<name> or external:<name>
    chosen.parquet           CHOSEN_SCHEMA, one row per labeled log: the label the plan will apply
    label_analysis.json      per source and per kind: coverage, overlaps, conflicts; agreement
                             between sources where both labeled a log; the CSV accounting per file
    rejects.json             what the report shows about the inbox, so that it never needs the inbox:
                             every file this run saw (status, reason) and the rejected rows (file,
                             line, reason, the original cells; the first MAX_LISTED_REJECTS)
    label.result.json        LabelResult.to_json()

Choosing: the label is taken whole (feedback and score together) from the source whose kind comes
first in ``[load] precedence`` (default csv > external > rules). Within a kind: the CSV labeler gives
one label per log already (the last word wins, see `labelers.csv`), and among rules the one listed
first in the job file wins. A kind left out of ``precedence`` still runs and is analysed, but its
labels are never chosen — a "shadow" mode to measure a new labeler's agreement with the analysts
before trusting it. A log whose sources gave opposite feedback is a conflict: it is still labeled
by precedence, and counted (``conflicts``), never hidden.

Labels for logs outside the window (old logs named in a CSV) are kept; the plan looks them up.

Memory: the window's logs are never collected. They stream from the extract's Parquet files
(`scan_window`, numbered `_row` in scan order) through polars' streaming engine once: the rules'
SQL is evaluated in that pass and its narrow result (`_row`, the id in its canonical spelling,
each rule's matched, feedback and score) sinks to a scratch file in the run folder
(`EVALUATED_FILE`, removed when the stage ends).
The rules' counts, the CSV labels' placement, labels.parquet, chosen.parquet and the analysis then
stream from that file. What is held grows with the labels kept as frames (CSV, external) and, while
chosen.parquet is sorted, with the chosen rows (a narrow frame: id, row, source number, values).
Measured (`bench/bench_label.py`, 20 rules): 1M logs + a 100k-row CSV peak at ~460 MB, 10M logs +
a 1M-row CSV at ~1.7 GB.
"""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa

from pipeline.config import JobConfig
from pipeline.ids import canonical_id_expr
from pipeline.labelers.base import (
    ROW,
    Clock,
    LabelContext,
    Labeler,
    empty_labels,
    utc_now,
)
from pipeline.result import StageResult
from pipeline.schemas import LABEL_SCHEMA, LOG_SCHEMA, UTC_MS
from pipeline.state import store
from pipeline.state.store import RunInfo

if TYPE_CHECKING:  # the labelers import openpyxl, the gateway...: only when the stage runs
    from pipeline.gateway.client import LogsClient
    from pipeline.labelers.rules import RulesLabeler

# One row per labeled log: what the plan applies, and where it came from.
CHOSEN_SCHEMA = pa.schema(
    [
        pa.field("log_id", pa.string(), nullable=False),
        pa.field("feedback", pa.int8()),
        pa.field("score", pa.float64()),
        pa.field("source", pa.string(), nullable=False),  # the source that won
        pa.field("kind", pa.string(), nullable=False),  # csv | external | rules
        pa.field("reason", pa.string()),
        pa.field("labeled_at", UTC_MS, nullable=False),
        pa.field("in_window", pa.bool_(), nullable=False),
        pa.field("sources", pa.int32(), nullable=False),  # how many sources labeled this log
        pa.field("disagree", pa.bool_(), nullable=False),  # some sources gave opposite feedback
    ]
)
LOG_POLARS_SCHEMA = pl.Schema(LOG_SCHEMA)
REJECTS_FILE = "rejects.json"  # in the run folder
EVALUATED_FILE = "_rules.parquet"  # in the run folder while the stage runs: the rules evaluated
MAX_LISTED_REJECTS = 1000
SINK_ROWS = 131_072  # rows per piece written to labels.parquet
# The columns of labels.parquet and chosen.parquet written with a dictionary (few values, many
# rows); the others (ids, values) are faster without, and only log_id gets min/max statistics.
REPEATED = ["source", "kind", "reason"]
# The per-file fields of the CSV accounting that the report shows.
REJECT_FILE_KEYS = ("name", "sheet", "status", "path", "detail", "rows", "accepted", "rejected",
                    "rejected_by_reason", "rejects_path")  # fmt: skip


@dataclass(frozen=True)
class LabelResult(StageResult):
    run_id: str
    window_logs: int
    total: int  # logs with a chosen label
    in_window: int
    outside_window: int
    conflicts: int  # logs whose sources gave opposite feedback
    by_source: dict[str, int]  # rows of labels.parquet per source
    chosen_by_kind: dict[str, int]
    csv: dict[str, Any]
    rules: dict[str, Any]
    external: dict[str, Any] | None
    requests: int
    errors: tuple[str, ...] = ()
    paths: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    timeline: list[list[int]] = field(
        default_factory=list
    )  # [epoch second, requests] (the judge's)

    @property
    def exit_code(self) -> int:
        """0: a labeler that failed is a warning (``errors``; the report names it), and the other
        labelers' labels still count."""
        return 0

    def summary(self) -> str:
        """A few lines for the terminal."""
        kinds = ", ".join(f"{k} {v:,}" for k, v in self.chosen_by_kind.items())
        lines = [
            f"labels   {self.total:,} logs labeled ({kinds or 'none'}; "
            f"{self.outside_window:,} outside the window), {self.conflicts:,} with conflicting "
            f"sources, of {self.window_logs:,} logs in the window"
        ]
        c = self.csv
        if c.get("files") or c.get("already_applied") or c.get("unreadable"):
            files = c.get("files", 0)
            line = (
                f"csv      {files} file{'' if files == 1 else 's'}, {c.get('rows', 0):,} rows: "
                f"{c.get('accepted', 0):,} accepted, {c.get('rejected', 0):,} rejected"
            )
            if c.get("rejected_by_reason"):
                line += " (" + ", ".join(f"{k} {v}" for k, v in c["rejected_by_reason"].items())
                line += ")"
            if c.get("inbox_consumed") is False:
                line += "; dry run: the inbox was read, not consumed"
            if c.get("already_applied"):
                line += f"; {c['already_applied']} already applied before"
            if c.get("unreadable"):
                line += f"; {c['unreadable']} unreadable (moved to rejected/)"
            lines.append(line)
        if self.external is not None:
            x = self.external
            line = f"external {x.get('name')}: {x.get('status')}, sent {x.get('sent', 0):,}"
            if x.get("status") == "ok":
                line += f", {x.get('labels', 0):,} labels, {x.get('requests', 0):,} requests"
            lines.append(line)
        lines += [f"warning: {e}" for e in self.errors]
        lines.append(f"analysis {self.paths.get('analysis', '')}")
        return "\n".join(lines)


async def label(
    job: JobConfig,
    run: RunInfo,
    *,
    client: LogsClient | None = None,
    clock: Clock | None = None,
    dry_run: bool = False,
) -> LabelResult:
    """Label the run's window. Needs the extract (StageError otherwise). A failing external
    labeler is reported in `errors`; the other labelers' labels still count. `dry_run` reads the
    CSV inbox without consuming it (files stay for the next real run).

    The window's logs are never held in memory: they stream from the extract's Parquet files
    once (the rules evaluated to a narrow scratch file, read by every later pass); what is held grows
    with the CSV and external labels (and, while the CSV labeler runs, the window's ids)."""
    from pipeline.labelers.rules import RulesLabeler

    now = (clock or utc_now)()
    started = time.monotonic()
    seconds0 = Counter(client.stats.per_second) if client is not None else Counter()
    window = scan_window(job, run)
    labelers = build_labelers(job, run, consume_inbox=not dry_run)
    rules = next((x for x in labelers if isinstance(x, RulesLabeler)), None)
    evaluated = run.paths.root / EVALUATED_FILE
    try:
        return await _label(
            job, run, client, now, (started, seconds0), window, labelers, rules, evaluated
        )
    finally:
        evaluated.unlink(missing_ok=True)


async def _label(
    job: JobConfig,
    run: RunInfo,
    client: LogsClient | None,
    now: datetime,
    since: tuple[float, Counter[int]],  # the stage's start: monotonic time, requests per second
    window: pl.LazyFrame,
    labelers: list[Labeler],
    rules: RulesLabeler | None,
    evaluated: Path,
) -> LabelResult:
    from pipeline.labelers.combine import combine_streamed
    from pipeline.labelers.external import ExternalLabeler
    from pipeline.labelers.rules import RulesLabeler

    # The rules' SQL runs once: one streamed pass over the logs sinks `_row`, `id` and each
    # rule's matched/feedback/score to a narrow file; every later pass reads that file.
    # Ids are compared and written in their canonical spelling (pipeline.ids), converted once.
    rows = window.select(ROW, canonical_id_expr(pl.col("id")).alias("id"))
    on_rows = rules
    if rules is not None:
        rules.evaluate(window).sink_parquet(evaluated, compression="lz4", statistics=False)
        rows, on_rows = pl.scan_parquet(evaluated), rules.evaluated()
    stats = on_rows.stats(rows) if on_rows is not None else {}
    size = _count(rows)
    accounts: dict[str, dict[str, Any]] = {}
    frames: list[pl.DataFrame] = []  # labels held in memory (csv, external), in labeler order
    rule_labels: pl.LazyFrame | None = None
    for labeler in labelers:
        if isinstance(labeler, RulesLabeler):
            assert on_rows is not None
            accounts["rules"] = labeler.accounting(stats)
            rule_labels = on_rows.labels(rows, now, stats)
            frames.append(empty_labels())  # where the rules' rows go in labels.parquet
            continue
        if isinstance(labeler, ExternalLabeler):
            context = LabelContext(run.run_id, now, _labeled(frames, rules, stats, now), client)
            output = await labeler.label(window, context)
        else:
            # The CSV labeler looks its rows up in the frame it is given, in memory (a hash of
            # every window id: 10M ids would cost GBs). Given no logs it finds none; the labels
            # are then placed in the window here, streamed (`window_rows`).
            none = pl.DataFrame(schema={"id": pl.String})
            output = await labeler.label(none, LabelContext(run.run_id, now, None, client))
        accounts[labeler.kind] = output.accounting
        frames.append(output.labels)
    held = place(pl.concat(frames, how="diagonal") if frames else empty_labels(), rows)
    if "csv" in accounts:
        accounts["csv"] = _outside_window(accounts["csv"], held)
    computed = on_rows.computed(now, stats) if on_rows is not None else []
    rule_order = [r.name for r in job.labels.rules]
    combined = combine_streamed(
        held, rows, size, job.load.precedence, rule_order, computed, placed=True, canonical_ids=True
    )
    analysis = combined.analysis()
    csv_acct = accounts.get("csv", {})
    analysis.update(
        run_id=run.run_id,
        window={"start": run.window.start.isoformat(), "end": run.window.end.isoformat()},
        precedence=list(job.load.precedence),
        csv=csv_acct,
        rules=accounts.get("rules", {}).get("rules", {}),
        external=accounts.get("external"),
    )
    pieces = [f.lazy() for f in frames]
    if rule_labels is not None:
        pieces[[isinstance(x, RulesLabeler) for x in labelers].index(True)] = rule_labels
    labels = pl.concat([p.select(LABEL_SCHEMA.names) for p in pieces]) if pieces else None
    _sink(labels if labels is not None else empty_labels().lazy(), LABEL_SCHEMA, run.paths.labels)
    chosen = (_arrow(batch) for batch in combined.chosen_batches())
    store.write_parquet_stream_atomic(
        chosen, CHOSEN_SCHEMA, run.paths.chosen, dictionary=REPEATED, statistics=["log_id"]
    )
    store.write_json_atomic(analysis, run.paths.label_analysis)
    store.write_json_atomic(
        capture_rejects(csv_acct, job.labels.csv.inbox), run.paths.root / REJECTS_FILE
    )
    external = accounts.get("external")
    errors = (external["error"],) if external and external.get("error") else ()
    kinds = analysis["kinds"]
    result = LabelResult(
        run_id=run.run_id,
        window_logs=size,
        total=int(analysis["chosen"]),
        in_window=int(analysis["chosen_in_window"]),
        outside_window=int(analysis["chosen"] - analysis["chosen_in_window"]),
        conflicts=int(analysis["conflicts"]),
        by_source={k: v["labels"] for k, v in analysis["sources"].items()},
        chosen_by_kind={k: kinds[k]["chosen"] for k in sorted(kinds) if kinds[k]["chosen"]},
        csv={
            **{k: v for k, v in csv_acct.items() if k != "by_file"},
            "not_read": [
                {k: f.get(k) for k in ("name", "status", "detail")}
                for f in csv_acct.get("by_file") or []
                if f.get("status") in ("unreadable", "skipped")
            ],
        },
        rules=analysis["rules"],
        external=external,
        requests=int((external or {}).get("requests", 0)),
        errors=errors,
        seconds=round(time.monotonic() - since[0], 3),
        timeline=client.stats.timeline_since(since[1]) if client is not None else [],
        paths={
            "labels": str(run.paths.labels),
            "chosen": str(run.paths.chosen),
            "analysis": str(run.paths.label_analysis),
        },
    )
    store.write_json_atomic(result.to_json(), run.paths.stage_result("label"))
    return result


def place(labels: pl.DataFrame, window: pl.LazyFrame) -> pl.DataFrame:
    """Labels with `_row` set for the logs in the window (one streamed pass over the window's
    ids against the labels' few ids); null for logs outside it. Row order is kept."""
    # A filter by a set of the labels' ids, not a semi-join: the streaming semi-join held memory
    # that grows with the window (measured at 10M logs and 770k ids: +620 MB against +240 MB).
    keys = labels.get_column("log_id").unique().implode()
    found = (
        window.select(pl.col("id").alias("log_id"), pl.col(ROW))
        .filter(pl.col("log_id").is_in(keys))
        .collect(engine="streaming")
    )
    return labels.drop(ROW, strict=False).join(
        found, on="log_id", how="left", maintain_order="left"
    )


def _outside_window(acct: dict[str, Any], held: pl.DataFrame) -> dict[str, Any]:
    """The CSV accounting with per-file `outside_window` (labels for logs the window does not
    hold) counted from where `place` put them."""
    csv_labels = held.filter(pl.col("source").str.starts_with("csv:") & pl.col(ROW).is_null())
    outside = dict(csv_labels.group_by("source").len().iter_rows())
    files = [dict(f) for f in acct.get("by_file") or []]
    if not files:
        return acct
    for entry in files:
        if entry.get("status") == "applied":
            name = Path(str(entry.get("path") or entry.get("name"))).name
            entry["outside_window"] = int(outside.get(f"csv:{name}", 0))
    applied = [f for f in files if f.get("status") == "applied"]
    return {
        **acct,
        "outside_window": sum(int(f.get("outside_window") or 0) for f in applied),
        "by_file": files,
    }


def _count(window: pl.LazyFrame) -> int:
    return int(window.select(pl.len()).collect(engine="streaming").item())


def _sink(frame: pl.LazyFrame, schema: pa.Schema, path: Path) -> int:
    """Stream a query into a Parquet file of `schema`, batch by batch (scrubbed, atomic)."""
    batches = frame.select(schema.names).collect_batches(engine="streaming")
    return store.write_parquet_stream_atomic(
        _grouped(batches), schema, path, dictionary=REPEATED, statistics=["log_id"]
    )


def _arrow(frame: pl.DataFrame) -> pa.Table:
    """A frame as Arrow with plain (large) strings, which cast to the schema's strings without
    copying each string again (polars' own string views would be)."""
    return frame.to_arrow(compat_level=pl.CompatLevel.oldest())


def _grouped(batches: Iterable[pl.DataFrame], rows: int = SINK_ROWS) -> Iterator[pa.Table]:
    """The streaming engine's batches (a few thousand rows each) joined into pieces of at least
    `rows` rows: fewer, larger row groups, written faster (10M logs: 1,620 row groups of
    labels.parquet took 8 s to write, 1.7 s more than pieces of 1M rows)."""
    held: list[pl.DataFrame] = []
    count = 0
    for batch in batches:
        held.append(batch)
        count += batch.height
        if count >= rows:
            yield _arrow(pl.concat(held))
            held, count = [], 0
    if held:
        yield _arrow(pl.concat(held))


def capture_rejects(csv_acct: Mapping[str, Any], inbox: Path) -> dict[str, Any]:
    """rejects.json: every inbox file this run saw, and its rejected rows read back from the
    rejects files the CSV labeler wrote beside the processed files (reject_line, reject_reason,
    reject_detail, then the original cells). The inbox is the analysts' folder: files move on from
    it, so the report reads this copy, never the inbox. A dry run writes no rejects files: then
    only the counts per reason are known."""
    files = [{k: f.get(k) for k in REJECT_FILE_KEYS} for f in csv_acct.get("by_file") or []]
    rows: list[dict[str, Any]] = []
    for entry in files:
        if not entry["rejects_path"] or len(rows) >= MAX_LISTED_REJECTS:
            continue
        try:
            text = (inbox / str(entry["rejects_path"])).read_text(encoding="utf-8-sig")
        except OSError:
            continue
        # The rejects file keeps the analyst's delimiter; its header starts with reject_line.
        delimiter = text[len("reject_line")] if text.startswith("reject_line") else ","
        for row in csv.DictReader(io.StringIO(text), delimiter=delimiter):
            line = row.get("reject_line") or ""
            rows.append(
                {
                    "file": entry["name"],
                    "sheet": entry["sheet"] or row.get("reject_sheet") or None,  # workbooks
                    "line": int(line) if line.isdigit() else None,
                    "reason": row.get("reject_reason") or "",
                    "detail": row.get("reject_detail") or "",
                    "cells": {k: v for k, v in row.items() if k and not k.startswith("reject_")},
                }
            )
            if len(rows) >= MAX_LISTED_REJECTS:
                break
    total = sum(int(f.get("rejected") or 0) for f in files)
    return {"version": 1, "files": files, "rows": rows, "rows_total": total}


def _labeled(
    frames: list[pl.DataFrame],
    rules: RulesLabeler | None,
    stats: dict[str, dict[str, int]],
    now: datetime,
) -> pl.Expr:
    """True for the logs that earlier labelers labeled: the ids of the labels held (CSV), or a
    rule labels the log (evaluated on the log's columns as they stream)."""
    ids = pl.concat([pl.Series("log_id", [], dtype=pl.String), *(f["log_id"] for f in frames)])
    done = pl.col("id").is_in(ids.unique().implode())
    for c in rules.computed(now, stats) if rules is not None else []:
        done = done | c.labeled
    return done


def build_labelers(job: JobConfig, run: RunInfo, *, consume_inbox: bool = True) -> list[Labeler]:
    """The enabled labelers, in the order they run: csv, rules, external (last, so that `send =
    "unlabeled"` knows what the others labeled)."""
    from pipeline.labelers.csv import CsvLabeler
    from pipeline.labelers.external import ExternalLabeler
    from pipeline.labelers.rules import RulesLabeler

    labelers: list[Labeler] = []
    if job.labels.csv.enabled:
        known = None
        if job.labels.csv.join_key != "log_id":
            files = store.log_files(job.store.data_dir, run.gateway_id)
            known = pl.scan_parquet(files).select("id", "metadata") if files else None
        labelers.append(CsvLabeler(job.labels.csv, known, consume=consume_inbox))
    if job.labels.rules:
        labelers.append(RulesLabeler(job.labels.rules))
    if job.labels.external.enabled:
        labelers.append(
            ExternalLabeler(
                job.labels.external,
                run.paths.root / "external",
                concurrency=job.budget.concurrency,
            )
        )
    return labelers


def scan_window(job: JobConfig, run: RunInfo) -> pl.LazyFrame:
    """The run window's extracted logs (LOG_SCHEMA) as a lazy scan, numbered `_row` in scan
    order. StageError if the window was never extracted."""
    files = store.log_files(job.store.data_dir, run.gateway_id, run.window.days())
    if not files:
        store.require(run.paths.stage_result("extract"), "extract", run.run_id)
        return pl.LazyFrame(schema=LOG_POLARS_SCHEMA).with_row_index(ROW)
    return (
        pl.scan_parquet(files)
        .select(LOG_POLARS_SCHEMA.names())
        .filter(
            (pl.col("created_at") >= run.window.start) & (pl.col("created_at") < run.window.end)
        )
        .cast(LOG_POLARS_SCHEMA)
        .with_row_index(ROW)
    )


def read_window_logs(job: JobConfig, run: RunInfo) -> pl.DataFrame:
    """The run window's extracted logs (LOG_SCHEMA), in memory (for tools and tests)."""
    return scan_window(job, run).drop(ROW).collect()


def choose(
    labels: pl.DataFrame,
    precedence: Sequence[str],
    rule_order: Sequence[str],
    window_ids: pl.Series,
) -> pl.DataFrame:
    """One row per log: the highest-precedence source's label (CHOSEN_SCHEMA columns)."""
    from pipeline.labelers.combine import combine

    return combine(labels, window_ids, precedence, rule_order).chosen().collect()


__all__ = [
    "CHOSEN_SCHEMA",
    "REJECTS_FILE",
    "LabelResult",
    "build_labelers",
    "capture_rejects",
    "choose",
    "label",
    "read_window_logs",
    "scan_window",
]
