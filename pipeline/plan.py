"""Plan: desired vs current state -> the exact list of PATCHes, before a single write is sent.

For every log with a chosen label (``chosen.parquet`` from the label stage) the plan finds the log's
current feedback, score and metadata — from the window's extract, or, for logs outside the window
(an analyst's CSV of old logs), by looking them up: a list request with an ``id`` filter of up to 50
ids, and a GET only for ids a batch did not return. Then one action per log:

    patch          something changes; ``body`` holds exactly the fields that change
    unchanged      the log already carries the label: no request
    keep_existing  the log already has feedback or a score from someone else and the job's policy
                   protects it (only sources in ``load.overwrite_existing`` may replace; default csv)
    not_found      the log does not exist (deleted, or a wrong id in a CSV)

Existing values count as "someone else's" unless this tool wrote them: its ``label_source`` stamp
in the log's metadata, or, where the stamp could not be added, the journal's memory of which source
it last wrote to the log (``journal.label_owners``). Then a label from a source of the same or higher
precedence may correct them, so a rule that changes can fix what it wrote last night; one of lower
precedence may change nothing on that log, not even add a score: an analyst's label written by last
night's run stays whole when tonight the CSV is gone from the inbox and a rule or the judge labels
the log. (To let the judge win, put it first in ``load.precedence``.)

Metadata stamping (``load.stamp_metadata``) adds ``label_source`` and ``label_run`` to the map of a
log that is patched anyway (never a request for the stamp alone). A PATCH replaces the whole map, so
the body carries the merged map: existing keys are never dropped. A map may hold at most 5 entries;
when the stamp would exceed that (or the current map is unknown) the stamp is skipped and counted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow as pa

from pipeline.config import JobConfig
from pipeline.gateway.client import LogEntry, LogsClient
from pipeline.gateway.lookup import (
    BATCH,
    MAX_GETS,
    entries_frame,
    get_each,
    lookup_cost,
    lookup_logs,
)
from pipeline.ids import canonical_id_expr
from pipeline.result import StageResult
from pipeline.schemas import SCORE_TOLERANCE
from pipeline.state import store
from pipeline.state.journal import label_owners
from pipeline.state.store import RunInfo
from pipeline.timefmt import human, iso

log = logging.getLogger(__name__)

ACTIONS = ("patch", "unchanged", "keep_existing", "not_found")
METADATA_MAX_ENTRIES = 5

# Label source prefixes (``csv:<file>``) -> the source names the job file uses.
SOURCE_KINDS = {"csv": "csv", "rule": "rules", "rules": "rules", "external": "external"}

PLAN_SCHEMA = pa.schema(
    [
        pa.field("log_id", pa.string(), nullable=False),
        pa.field("action", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("found_in", pa.string()),  # extract | lookup | null (not found)
        pa.field("provider", pa.string()),
        pa.field("model", pa.string()),
        pa.field("current_feedback", pa.int8()),
        pa.field("current_score", pa.float64()),
        pa.field("current_metadata", pa.string()),
        pa.field("current_known", pa.bool_()),  # false: the server did not show feedback/score
        pa.field("desired_feedback", pa.int8()),
        pa.field("desired_score", pa.float64()),
        pa.field("desired_metadata", pa.string()),
        pa.field("body", pa.string()),  # the PATCH body as canonical JSON; null unless action=patch
        pa.field("body_hash", pa.string()),
        pa.field("stamp_skipped", pa.bool_(), nullable=False),
    ]
)


@dataclass(frozen=True)
class PlanResult(StageResult):
    run_id: str
    labels: int
    patch: int
    unchanged: int
    keep_existing: int
    not_found: int
    stamp_skipped: int
    from_extract: int
    looked_up: int
    lookup_requests: int
    load_requests: int
    verify_requests: int
    requests_needed: int
    rate_per_second: float
    estimated_seconds: float
    started_at: str
    finished_at: str
    seconds: float
    verify_enabled: bool = True
    by_source: dict[str, dict[str, int]] = field(default_factory=dict)
    unknown_kept: int = 0  # kept because the server did not show their feedback (may be someone's)
    unresolved: int = 0  # not returned by a look-up, not confirmed absent: counted as not found
    timeline: list[list[int]] = field(default_factory=list)  # [epoch second, requests]

    @property
    def exit_code(self) -> int:
        return 0  # a plan is a plan; what it costs is in the summary

    def summary(self) -> str:
        return (
            f"plan {self.run_id}: {self.patch} to patch, {self.unchanged} unchanged, "
            f"{self.keep_existing} kept (existing feedback protected), {self.not_found} not found; "
            f"{self.lookup_requests} requests spent on look-ups; "
            f"{self.requests_needed} requests needed, about {human(self.estimated_seconds)} "
            f"at {self.rate_per_second:.2f} requests/s"
        )


# ---------------------------------------------------------------------------------------------
# The decision (pure, vectorised)


def source_kind(source: pl.Expr) -> pl.Expr:
    """``csv:<file>`` -> csv, ``rule:<name>`` -> rules, ``external:<name>`` -> external."""
    prefix = source.str.split_exact(":", 1).struct.field("field_0")
    return prefix.replace_strict(SOURCE_KINDS, default=prefix, return_dtype=pl.String)


def decide(
    chosen: pl.DataFrame,
    current: pl.DataFrame,
    *,
    overwrite_existing: Sequence[str],
    precedence: Sequence[str],
    owners: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """Join labels to current state and choose an action per log. No bodies yet.

    ``chosen``: log_id, feedback (int8), score (float64), source, reason.
    ``current``: id, feedback, score, metadata, found_in (and provider, model, known if there:
    ``known`` false means the server did not show the log's feedback and score, so they may hold
    anyone's label: a source that may not overwrite existing labels leaves such a log alone).
    ``owners``: log_id -> the source this tool last wrote to the log (see the module docstring).
    """
    rank = {kind: i for i, kind in enumerate(precedence)}
    known = pl.col("known") if "known" in current.columns else pl.lit(True)
    cur = current.select(
        pl.col("id").alias("log_id"),
        known.fill_null(True).alias("current_known"),
        pl.col("feedback").cast(pl.Int8).alias("current_feedback"),
        pl.col("score").cast(pl.Float64).alias("current_score"),
        pl.col("metadata").alias("current_metadata"),
        pl.col("found_in"),
        *(
            pl.col(c) if c in current.columns else pl.lit(None, dtype=pl.String).alias(c)
            for c in ("provider", "model")
        ),
    ).unique("log_id", keep="first")
    df = chosen.select(
        "log_id",
        pl.col("feedback").cast(pl.Int8).alias("label_feedback"),
        pl.col("score").cast(pl.Float64).alias("label_score"),
        "source",
        "reason",
    ).join(cur, on="log_id", how="left")
    owned = pl.DataFrame(
        {"log_id": list(owners or {}), "owner": list((owners or {}).values())},
        schema={"log_id": pl.String, "owner": pl.String},
    )
    df = df.join(owned, on="log_id", how="left")

    fb, cfb = pl.col("label_feedback"), pl.col("current_feedback")
    sc, csc = pl.col("label_score"), pl.col("current_score")
    unknown = ~pl.col("current_known").fill_null(True)
    fb_change = fb.is_not_null() & (unknown | fb.ne_missing(cfb))
    sc_change = sc.is_not_null() & (unknown | csc.is_null() | ((sc - csc).abs() > SCORE_TOLERANCE))
    # feedback 0 means "not evaluated": nothing to protect. Unknown: possibly someone's label.
    overwrites = (
        (fb_change & cfb.is_not_null() & (cfb != 0))
        | (sc_change & csc.is_not_null())
        | (unknown & (fb_change | sc_change))
    )
    kind = source_kind(pl.col("source"))
    stamped_kind = source_kind(
        pl.coalesce(
            pl.col("current_metadata").str.json_path_match("$.label_source"), pl.col("owner")
        )
    )
    kind_rank = kind.replace_strict(rank, default=len(rank), return_dtype=pl.Int32)
    stamped_rank = stamped_kind.replace_strict(rank, default=None, return_dtype=pl.Int32)
    outranked = stamped_rank.is_not_null() & (kind_rank > stamped_rank)
    may_overwrite = kind.is_in(list(overwrite_existing)) | (
        stamped_rank.is_not_null() & (kind_rank <= stamped_rank)
    )

    action = (
        pl.when(pl.col("found_in").is_null())
        .then(pl.lit("not_found"))
        .when(~(fb_change | sc_change))
        .then(pl.lit("unchanged"))
        .when(outranked.fill_null(False))
        .then(pl.lit("keep_existing"))
        .when(overwrites & ~may_overwrite.fill_null(False))
        .then(pl.lit("keep_existing"))
        .otherwise(pl.lit("patch"))
    )
    return df.with_columns(
        action=action,
        change_feedback=fb_change.fill_null(False),
        change_score=sc_change.fill_null(False),
    ).with_columns(
        desired_feedback=pl.when(pl.col("action") == "patch")
        .then(pl.when(pl.col("change_feedback")).then(fb).otherwise(cfb))
        .otherwise(cfb),
        desired_score=pl.when(pl.col("action") == "patch")
        .then(pl.when(pl.col("change_score")).then(sc).otherwise(csc))
        .otherwise(csc),
    )


def build_bodies(decided: pl.DataFrame, *, stamp: bool, run_id: str) -> pl.DataFrame:
    """Add desired_metadata, body, body_hash, stamp_skipped. Only the patch rows get a body.

    The one loop over rows: merging metadata maps and writing JSON is per-log work by nature.
    """
    patch = decided.filter(pl.col("action") == "patch")
    rows = patch.select(
        "log_id",
        "label_feedback",
        "label_score",
        "change_feedback",
        "change_score",
        "current_metadata",
        "source",
    ).iter_rows(named=True)
    built: list[dict[str, Any]] = []
    for row in rows:
        body: dict[str, Any] = {}
        if row["change_feedback"]:
            body["feedback"] = int(row["label_feedback"])
        if row["change_score"]:
            body["score"] = float(row["label_score"])
        desired_metadata = row["current_metadata"]
        skipped = False
        if stamp:
            merged = stamp_metadata(row["current_metadata"], row["source"], run_id)
            if merged is None:
                skipped = True
            else:
                body["metadata"] = merged
                desired_metadata = json.dumps(merged, sort_keys=True, separators=(",", ":"))
        text = body_json(body)
        built.append(
            {
                "log_id": row["log_id"],
                "desired_metadata": desired_metadata,
                "body": text,
                "body_hash": body_hash(text),
                "stamp_skipped": skipped,
            }
        )
    extra = pl.DataFrame(
        built,
        schema={
            "log_id": pl.String,
            "desired_metadata": pl.String,
            "body": pl.String,
            "body_hash": pl.String,
            "stamp_skipped": pl.Boolean,
        },
    )
    out = decided.join(extra, on="log_id", how="left")
    return out.with_columns(
        desired_metadata=pl.coalesce("desired_metadata", "current_metadata"),
        stamp_skipped=pl.col("stamp_skipped").fill_null(False),
    )


def stamp_metadata(current: str | None, source: str, run_id: str) -> dict[str, Any] | None:
    """The current map plus label_source and label_run, or None when that cannot be sent safely:
    the current map is not a JSON map, or the result would exceed 5 entries."""
    if current is None or not current.strip():
        existing: dict[str, Any] = {}
    else:
        try:
            parsed = json.loads(current)
        except ValueError:
            return None
        if not isinstance(parsed, dict):
            return None
        existing = parsed
    merged = {**existing, "label_source": source, "label_run": run_id}
    if len(merged) > METADATA_MAX_ENTRIES:
        return None
    return merged


def body_json(body: Mapping[str, Any]) -> str:
    """Canonical JSON: sorted keys, no spaces. The same change always gives the same text."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def body_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def plan_table(planned: pl.DataFrame) -> pa.Table:
    """The plan with its explicit Arrow schema."""
    return planned.select(PLAN_SCHEMA.names).to_arrow().cast(PLAN_SCHEMA)


# ---------------------------------------------------------------------------------------------
# The stage


def read_chosen(run: RunInfo) -> pl.DataFrame:
    path = store.require(run.paths.chosen, "label", run.run_id)
    chosen = pl.read_parquet(path)
    if "reason" not in chosen.columns:
        chosen = chosen.with_columns(reason=pl.lit(None, dtype=pl.String))
    return chosen.select("log_id", "feedback", "score", "source", "reason").unique(
        "log_id", keep="first", maintain_order=True
    )


def read_extract(job: JobConfig, run: RunInfo, ids: pl.Series) -> pl.DataFrame:
    """Current state of the labeled logs that the window's extract holds (ids canonical)."""
    files = store.log_files(job.store.data_dir, run.gateway_id, run.window.days())
    columns = {
        "id": pl.String,
        "feedback": pl.Int8,
        "score": pl.Float64,
        "metadata": pl.String,
        "provider": pl.String,
        "model": pl.String,
        "known": pl.Boolean,
    }
    if not files:
        return pl.DataFrame(schema=columns)
    logs = pl.scan_parquet(files, missing_columns="insert")
    return (
        logs.select(
            canonical_id_expr(pl.col("id")).alias("id"),
            "feedback",
            "score",
            "metadata",
            "provider",
            "model",
            # Partitions written before the column existed came from servers that showed both.
            pl.col("feedback_shown").fill_null(True).alias("known"),
        )
        .filter(pl.col("id").is_in(ids.implode()))
        .unique("id", keep="last")
        .collect()
        .cast(columns)  # type: ignore[arg-type]
    )


def looked_up_frame(entries: Iterable[LogEntry]) -> pl.DataFrame:
    """Look-up entries in the shape of ``read_extract`` (known: the entry showed both fields)."""
    return (
        entries_frame(entries)
        .with_columns(
            canonical_id_expr(pl.col("id")).alias("id"),
            known=pl.col("has_feedback") & pl.col("has_score"),
        )
        .select("id", "feedback", "score", "metadata", "provider", "model", "known")
    )


async def read_unknown(
    client: LogsClient,
    current: pl.DataFrame,
    chosen: pl.DataFrame,
    *,
    overwrite_existing: Sequence[str],
    gets: int,
    concurrency: int,
) -> pl.DataFrame:
    """GET the logs whose feedback the list did not show, up to ``gets``, where it matters: labels
    from sources that may not overwrite existing labels (rules, the judge). A source that may
    overwrite gets a PATCH either way, and a GET would cost as much as the PATCH it might save."""
    unknown = (
        current.filter(~pl.col("known"))
        .join(chosen.select(pl.col("log_id").alias("id"), "source"), on="id")
        .filter(~source_kind(pl.col("source")).is_in(list(overwrite_existing)))
        .sort("id")
    )
    ids = unknown.get_column("id").head(max(gets, 0)).to_list()
    if not ids:
        return current
    fetched = await get_each(client, ids, concurrency=concurrency)
    read = looked_up_frame(fetched.entries.values())
    if fetched.missing:  # deleted since the list: gone now
        current = current.filter(~pl.col("id").is_in(list(fetched.missing)))
    return pl.concat(
        [
            current.join(read.select("id"), on="id", how="anti"),
            read.with_columns(found_in=pl.lit("lookup")),
        ],
        how="vertical_relaxed",
    )


async def plan(
    job: JobConfig,
    run: RunInfo,
    *,
    client: LogsClient,
    clock: Callable[[], float] = time.time,
    use_extract: bool = True,
) -> PlanResult:
    """Write ``plan.parquet`` for a run and return the counts, requests needed and time at budget.

    ``use_extract`` false (``apply``): no window was extracted, every labeled log is looked up.

    Before it spends any request it logs what the look-ups may cost; the result counts what they
    did cost, so a dry run spends nothing it does not report.
    """
    started = clock()
    chosen = read_chosen(run)
    ids = chosen.get_column("log_id")
    extracted = read_extract(job, run, ids if use_extract else ids.head(0))
    extracted = extracted.with_columns(found_in=pl.lit("extract"))
    outside = ids.filter(~ids.is_in(extracted.get_column("id").implode())).to_list()
    lists, most_gets = lookup_cost(len(outside))
    if outside:
        log.info(
            "plan %s: looking up %d logs outside the window: list requests %d, GETs at most %d",
            run.run_id,
            len(outside),
            lists,
            most_gets,
        )

    before = client.stats.requests
    seconds0 = Counter(client.stats.per_second)
    lookup = await lookup_logs(client, outside, concurrency=job.budget.concurrency)
    looked = looked_up_frame(lookup.entries.values()).with_columns(found_in=pl.lit("lookup"))
    current = pl.concat([extracted, looked], how="vertical_relaxed")
    bare = current.filter(~pl.col("known")).height
    if bare:
        log.info(
            "plan %s: the list did not show the feedback of %d labeled logs: up to %d GETs "
            "for those a rule or the judge would label",
            run.run_id,
            bare,
            min(bare, MAX_GETS),
        )
    current = await read_unknown(
        client,
        current,
        chosen,
        overwrite_existing=job.load.overwrite_existing,
        gets=MAX_GETS,
        concurrency=job.budget.concurrency,
    )
    lookup_requests = client.stats.requests - before

    decided = decide(
        chosen,
        current,
        overwrite_existing=job.load.overwrite_existing,
        precedence=job.load.precedence,
        owners=label_owners(job.store.data_dir, run.gateway_id, ids.to_list()),
    )
    planned = build_bodies(decided, stamp=job.load.stamp_metadata, run_id=run.run_id)
    store.write_parquet_atomic(plan_table(planned), run.paths.plan)

    counts = {a: 0 for a in ACTIONS}
    counts.update(dict(planned.group_by("action").len().iter_rows()))
    by_source: dict[str, dict[str, int]] = {}
    for src, act, n in planned.group_by("source", "action").len().sort("source").iter_rows():
        by_source.setdefault(src, {a: 0 for a in ACTIONS})[act] = n
    patches = counts["patch"]
    # A server that does not list feedback is read back by one GET per patched log.
    unlisted = bare > 0
    verify_requests = 0
    if job.verify.enabled:
        verify_requests = math.ceil(patches / BATCH) + (patches if unlisted else 0)
    needed = patches + verify_requests
    rate = job.budget.rate_per_second
    finished = clock()
    unknown_kept = planned.filter(
        ~pl.col("current_known").fill_null(True) & (pl.col("action") == "keep_existing")
    ).height
    result = PlanResult(
        run_id=run.run_id,
        labels=planned.height,
        patch=patches,
        unchanged=counts["unchanged"],
        keep_existing=counts["keep_existing"],
        not_found=counts["not_found"],
        stamp_skipped=int(planned.get_column("stamp_skipped").sum()),
        from_extract=planned.filter(pl.col("found_in") == "extract").height,
        looked_up=len(outside),
        lookup_requests=lookup_requests,
        load_requests=patches,
        verify_requests=verify_requests,
        requests_needed=needed,
        rate_per_second=rate,
        estimated_seconds=needed / rate if rate > 0 else 0.0,
        started_at=iso(started),
        finished_at=iso(finished),
        seconds=round(finished - started, 3),
        verify_enabled=job.verify.enabled,
        by_source=by_source,
        unknown_kept=unknown_kept,
        unresolved=len(lookup.unresolved),
        timeline=client.stats.timeline_since(seconds0),
    )
    store.write_json_atomic(result.to_json(), run.paths.stage_result("plan"))
    return result
