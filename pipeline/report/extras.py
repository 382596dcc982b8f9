"""What report.md and report.html show beyond report.json, read from the run folder.

What changed (feedback and score before / planned / after, overall, by source and by provider and
model) comes from ``plan.parquet`` and ``verify.parquet``; failures from the load and verify
results; rejected CSV rows from ``rejects.json``; the requests over time of each stage from its
result: the load keeps a count per second (``timeline``), the other stages only their requests and
seconds, so their chart is the average over the stage (`StageRequests.per_second` says which).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from pipeline.label import LabelResult
from pipeline.load import LoadResult
from pipeline.report.inputs import RunFolder, read_parquet
from pipeline.verify import VerifyResult


@dataclass(frozen=True)
class StageRequests:
    """The requests one stage sent, for its chart: per second where the stage records that."""

    stage: str  # extract | label | plan | load | verify
    requests: int
    seconds: float
    timeline: list[list[int]] | None = None  # [epoch second, requests]; None: totals only

    @property
    def per_second(self) -> bool:
        return self.timeline is not None


@dataclass(frozen=True)
class Extras:
    by_model: list[
        dict[str, Any]
    ]  # provider, model, labels, positive, negative, patch + CHANGE_KEYS
    feedback: list[dict[str, Any]]  # value, before, planned, after (None: not known)
    analysis: dict[str, Any] | None  # label_analysis.json, any shape
    rejects: list[dict[str, Any]]  # file, line, reason (code), detail, row; or rows (a count)
    timeline: list[list[int]]  # [second, PATCH requests sent in it]
    failures: list[dict[str, Any]]  # log_id, what, http, reason (as listed; the lists are capped)
    feedback_note: str | None = None  # what "after" can and cannot say
    by_source: list[dict[str, Any]] = field(default_factory=list)  # source + CHANGE_KEYS
    score: list[dict[str, Any]] = field(default_factory=list)  # what, before, planned, after
    stage_requests: list[StageRequests] = field(default_factory=list)
    csv_files: list[dict[str, Any]] = field(default_factory=list)  # name, status, rows, ...


# Per group of labeled logs (a source, a provider and model): before -> after, counting only what
# was written (None: which changes were written is not known).
CHANGE_KEYS = ("labels", "patch", "written", "good_before", "good_after", "bad_before",
               "bad_after", "score_before", "score_after")  # fmt: skip


def gather_extras(folder: RunFolder) -> tuple[Extras, list[str]]:
    """The tables beyond report.json, and a sentence for each file they could not be read from."""
    load_, paths = folder.results.load, folder.run.paths
    by_model: list[dict[str, Any]] = []
    by_source: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    score: list[dict[str, Any]] = []
    note: str | None = None
    damaged: list[str] = []
    planned = read_parquet(paths.plan, damaged)
    if planned is not None:
        verified = read_parquet(paths.verify, damaged)
        after, note = _written(planned, verified, load_)
        feedback = _feedback(after)
        score = _score(after)
        by_model = _by_model(after)
        by_source = _changes(after, "source")
    extras = Extras(
        by_model=by_model,
        feedback=feedback,
        analysis=folder.analysis,
        rejects=_rejects(folder.results.label, folder.rejects),
        timeline=[[int(a), int(b)] for a, b in (load_.timeline if load_ else [])],
        failures=_failures(load_, folder.results.verify),
        feedback_note=note,
        by_source=by_source,
        score=score,
        stage_requests=_stage_requests(folder),
        csv_files=_csv_files(folder),
    )
    return extras, damaged


def _csv_files(folder: RunFolder) -> list[dict[str, Any]]:
    """The inbox files the label stage saw: the analysis's list (with encodings and labels) where
    the run folder has one, else the label stage's."""
    csv = (folder.analysis or {}).get("csv")
    files = csv.get("by_file") if isinstance(csv, Mapping) else None
    if isinstance(files, list) and files:
        return [dict(f) for f in files if isinstance(f, Mapping)]
    return list(folder.inbox)


def _stage_requests(folder: RunFolder) -> list[StageRequests]:
    """Each stage that ran and sent requests: its count, its seconds, its per-second timeline
    (a result written before timelines existed shows its average)."""
    r = folder.results
    rows = [
        StageRequests(
            "extract", r.extract.requests, float(r.extract.seconds), r.extract.timeline or None
        )
        if r.extract
        else None,
        StageRequests("label", r.label.requests, float(r.label.seconds), r.label.timeline or None)
        if r.label
        else None,
        StageRequests(
            "plan", r.plan.lookup_requests, float(r.plan.seconds), r.plan.timeline or None
        )
        if r.plan
        else None,
        StageRequests(
            "load",
            r.load.requests,
            float(r.load.seconds),
            [[int(a), int(b)] for a, b in r.load.timeline],
        )
        if r.load
        else None,
        StageRequests(
            "verify", r.verify.requests, float(r.verify.seconds), r.verify.timeline or None
        )
        if r.verify
        else None,
    ]
    return [row for row in rows if row is not None and row.requests]


def _written(
    planned: pl.DataFrame, verified: pl.DataFrame | None, load_: LoadResult | None
) -> tuple[pl.DataFrame, str | None]:
    """The plan with ``feedback_after`` and ``score_after``: what each labeled log holds after the
    run, counting only what was written (null columns when that is not known). Which changes were
    written is known per log from verify.parquet (every log the load finished, read back); without
    it only when none or all of them were."""
    patches = int((planned["action"] == "patch").sum())
    patched = load_.patched if load_ else 0
    patch = pl.col("action") == "patch"
    note = None
    frame = planned.with_columns(
        pl.col("provider").fill_null("(unknown)"), pl.col("model").fill_null("(unknown)")
    )
    if verified is not None and verified.height == patched:
        read = verified.select("log_id", "status", "actual_feedback", "actual_score")
        frame = frame.join(read, on="log_id", how="left")
        # A change that reads back different is shown as read back; one the API cannot show
        # (unverifiable) as sent, since the API acknowledged it.
        not_written = pl.col("status").is_null() | ~patch
        mismatched = pl.col("status") == "mismatched"
        written = ~not_written
        fb = (
            pl.when(not_written).then("current_feedback").when(mismatched)
            .then("actual_feedback").otherwise("desired_feedback")
        )  # fmt: skip
        sc = (
            pl.when(not_written).then("current_score").when(mismatched)
            .then("actual_score").otherwise("desired_score")
        )  # fmt: skip
    elif patched == 0:
        written, fb, sc = pl.lit(False), pl.col("current_feedback"), pl.col("current_score")
        if patches:
            note = "Nothing was written: after is the same as before."
    elif patched == patches:
        written = patch
        fb = pl.when(patch).then("desired_feedback").otherwise("current_feedback")
        sc = pl.when(patch).then("desired_score").otherwise("current_score")
    else:
        written = pl.lit(None, dtype=pl.Boolean)
        fb, sc = pl.lit(None, dtype=pl.Int8), pl.lit(None, dtype=pl.Float64)
        note = (
            f"{patched:,} of {patches:,} planned changes were applied; which ones is known once "
            "they are read back (`aigw-feedback verify JOB --run RUN_ID`)."
        )
    frame = frame.with_columns(
        written=written.cast(pl.Boolean),
        feedback_after=fb.cast(pl.Int8),
        score_after=sc.cast(pl.Float64),
        known=pl.lit(note is None or patched == 0),
    )
    return frame, note


def _feedback(after: pl.DataFrame) -> list[dict[str, Any]]:
    """Feedback on the labeled logs: before the run, as planned, and after."""
    known = bool(after["known"].all()) if after.height else True
    counts = after.select(
        before="current_feedback", planned="desired_feedback", after="feedback_after"
    )
    tallies = {c: dict(counts.group_by(c).len().iter_rows()) for c in counts.columns}
    names = {1: "+1 (good)", -1: "-1 (bad)", 0: "0 (not evaluated)", None: "none"}
    rows = []
    for value, name in names.items():
        row: dict[str, Any] = {c: tallies[c].get(value, 0) for c in counts.columns}
        if not known:
            row["after"] = None  # not known: never a guess
        if any(row.values()):
            rows.append({"value": name, **row})
    return rows


def _score(after: pl.DataFrame) -> list[dict[str, Any]]:
    """Scores on the labeled logs: how many have one, and their mean, before / planned / after."""
    if not after.height:
        return []
    known = bool(after["known"].all())
    cols = {"before": "current_score", "planned": "desired_score", "after": "score_after"}
    stats = after.select(
        *(pl.col(c).is_not_null().sum().alias(f"n_{k}") for k, c in cols.items()),
        *(pl.col(c).mean().alias(f"mean_{k}") for k, c in cols.items()),
    ).row(0, named=True)
    if not any(stats[f"n_{k}"] for k in cols):
        return []
    with_score = {k: stats[f"n_{k}"] if known or k != "after" else None for k in cols}
    means = {
        k: (round(float(stats[f"mean_{k}"]), 1) if stats[f"mean_{k}"] is not None else None)
        if known or k != "after"
        else None
        for k in cols
    }
    return [{"what": "logs with a score", **with_score}, {"what": "mean score", **means}]


def _changes(after: pl.DataFrame, *by: str) -> list[dict[str, Any]]:
    """Before -> after per group: labels, planned and written changes, +1 and -1, mean score."""
    if not after.height:
        return []
    known = bool(after["known"].all())
    fb_after = pl.col("feedback_after")
    out = (
        after.group_by(*by)
        .agg(
            labels=pl.len(),
            positive=(pl.col("desired_feedback") == 1).sum(),
            negative=(pl.col("desired_feedback") == -1).sum(),
            patch=(pl.col("action") == "patch").sum(),
            written=pl.col("written").sum(),
            good_before=(pl.col("current_feedback") == 1).sum(),
            good_after=(fb_after == 1).sum(),
            bad_before=(pl.col("current_feedback") == -1).sum(),
            bad_after=(fb_after == -1).sum(),
            score_before=pl.col("current_score").mean().round(1),
            score_after=pl.col("score_after").mean().round(1),
        )
        .sort("labels", *by, descending=[True, *([False] * len(by))])
    )
    if not known:
        unknown = ("written", "good_after", "bad_after", "score_after")
        out = out.with_columns(pl.lit(None).alias(c) for c in unknown)
    return out.to_dicts()


def _by_model(after: pl.DataFrame) -> list[dict[str, Any]]:
    return _changes(after, "provider", "model")


def _rejects(
    label_result: LabelResult | None, rejects: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """Rejected CSV rows with their reasons, from the label stage's rejects.json in the run folder.
    Where it has no rows (a dry run, or a run folder from before rejects.json), the counts per
    reason and file."""
    out: list[dict[str, Any]] = []
    for row in (rejects or {}).get("rows") or []:
        cells = row.get("cells") or {}
        shown = [f"{k}: {v}" for k, v in cells.items() if v not in (None, "")]
        out.append(
            {
                "file": row.get("file") or "",
                "line": row.get("line"),
                "reason": str(row.get("reason") or ""),
                "detail": str(row.get("detail") or ""),
                "row": " · ".join(shown) if shown else "(every cell empty)",
            }
        )
    if out:
        return out
    for entry in (rejects or {}).get("files") or []:
        for reason, n in (entry.get("rejected_by_reason") or {}).items():
            out.append({"file": entry.get("name") or "", "line": "", "reason": reason, "rows": n})
    if not out and label_result is not None:
        by_reason = (label_result.csv or {}).get("rejected_by_reason") or {}
        out = [{"file": "", "line": "", "reason": r, "rows": n} for r, n in by_reason.items()]
    return out


def _failures(load_: LoadResult | None, verify_: VerifyResult | None) -> list[dict[str, Any]]:
    """The changes that failed (load) or read back different (verify), as their results list them
    (each entry a plain map, as the stage wrote it)."""
    rows = [
        {
            "log_id": f.get("log_id"),
            "what": f.get("status"),
            "http": f.get("http_status"),
            "reason": f.get("error"),
        }
        for f in (load_.failures if load_ else [])
    ]
    rows += [
        {
            "log_id": m.get("log_id"),
            "what": m.get("status"),
            "http": None,
            "reason": m.get("reason"),
        }
        for m in (verify_.mismatches if verify_ else [])
    ]
    return rows
