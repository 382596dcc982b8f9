"""What report.md and report.html show beyond report.json, read from the run folder.

Labels by provider and model and the feedback before / planned / after come from ``plan.parquet``
and ``verify.parquet``; failures from the load and verify results; rejected CSV rows from
``rejects.json``; the requests over time from the load result's timeline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from pipeline.label import LabelResult
from pipeline.load import LoadResult
from pipeline.report.inputs import RunFolder, read_parquet
from pipeline.verify import VerifyResult


@dataclass(frozen=True)
class Extras:
    by_model: list[dict[str, Any]]  # provider, model, labels, positive, negative, patch
    feedback: list[dict[str, Any]]  # value, before, planned, after (None: not known)
    analysis: dict[str, Any] | None  # label_analysis.json, any shape
    rejects: list[dict[str, Any]]  # file, line, reason, row
    timeline: list[list[int]]  # [second, PATCH requests sent in it]
    failures: list[dict[str, Any]]  # log_id, what, http, reason (as listed; the lists are capped)
    feedback_note: str | None = None  # what "after" can and cannot say


def gather_extras(folder: RunFolder) -> tuple[Extras, list[str]]:
    """The tables beyond report.json, and a sentence for each file they could not be read from."""
    load_, paths = folder.results.load, folder.run.paths
    by_model: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    note: str | None = None
    damaged: list[str] = []
    planned = read_parquet(paths.plan, damaged)
    if planned is not None:
        by_model = _by_model(planned)
        verified = read_parquet(paths.verify, damaged)
        feedback, note = _feedback(planned, verified, load_)
    extras = Extras(
        by_model=by_model,
        feedback=feedback,
        analysis=folder.analysis,
        rejects=_rejects(folder.results.label, folder.rejects),
        timeline=[[int(a), int(b)] for a, b in (load_.timeline if load_ else [])],
        failures=_failures(load_, folder.results.verify),
        feedback_note=note,
    )
    return extras, damaged


def _by_model(planned: pl.DataFrame) -> list[dict[str, Any]]:
    joined = planned.with_columns(
        pl.col("provider").fill_null("(unknown)"), pl.col("model").fill_null("(unknown)")
    )
    return (
        joined.group_by("provider", "model")
        .agg(
            labels=pl.len(),
            positive=(pl.col("desired_feedback") == 1).sum(),
            negative=(pl.col("desired_feedback") == -1).sum(),
            patch=(pl.col("action") == "patch").sum(),
        )
        .sort("labels", "provider", "model", descending=[True, False, False])
        .to_dicts()
    )


def _feedback(
    planned: pl.DataFrame, verified: pl.DataFrame | None, load_: LoadResult | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Feedback on the labeled logs: before the run, as planned, and after — counting only what
    was written. Which changes were written is known per log from verify.parquet (every log the
    load finished, read back); without it only when none or all of them were."""
    patches = int((planned["action"] == "patch").sum())
    patched = load_.patched if load_ else 0
    current, desired = pl.col("current_feedback"), pl.col("desired_feedback")
    after: pl.Expr | None
    note = None
    if verified is not None and verified.height == patched:
        read = verified.select("log_id", "status", "actual_feedback")
        planned = planned.join(read, on="log_id", how="left")
        # A change that reads back different is shown as read back; one the API cannot show
        # (unverifiable) as sent, since the API acknowledged it.
        after = (
            pl.when(pl.col("status").is_null() | (pl.col("action") != "patch"))
            .then(current)
            .when(pl.col("status") == "mismatched")
            .then(pl.col("actual_feedback"))
            .otherwise(desired)
        )
    elif patched == 0:
        after = current
        if patches:
            note = "Nothing was written: after is the same as before."
    elif patched == patches:
        after = pl.when(pl.col("action") == "patch").then(desired).otherwise(current)
    else:
        after = None
        note = (
            f"{patched:,} of {patches:,} planned changes were applied; which ones is known once "
            "they are read back (`aigw-feedback verify JOB --run RUN_ID`)."
        )
    counts = planned.select(
        before=current,
        planned=desired,
        after=after if after is not None else pl.lit(None, dtype=pl.Int8),
    )
    tallies = {c: dict(counts.group_by(c).len().iter_rows()) for c in counts.columns}
    names = {1: "+1 (good)", -1: "-1 (bad)", 0: "0 (not evaluated)", None: "none"}
    rows = []
    for value, name in names.items():
        row: dict[str, Any] = {c: tallies[c].get(value, 0) for c in counts.columns}
        if after is None:
            row["after"] = None  # not known: never a guess
        if any(row.values()):
            rows.append({"value": name, **row})
    return rows, note


def _rejects(
    label_result: LabelResult | None, rejects: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """Rejected CSV rows with their reasons, from the label stage's rejects.json in the run folder.
    Where it has no rows (a dry run, or a run folder from before rejects.json), the counts per
    reason and file."""
    out: list[dict[str, Any]] = []
    for row in (rejects or {}).get("rows") or []:
        reason = str(row.get("reason") or "")
        if row.get("detail"):
            reason = f"{reason}: {row['detail']}"
        out.append(
            {
                "file": row.get("file") or "",
                "line": row.get("line"),
                "reason": reason,
                "row": json.dumps(row.get("cells") or {}, ensure_ascii=False),
            }
        )
    if out:
        return out
    for entry in (rejects or {}).get("files") or []:
        for reason, n in (entry.get("rejected_by_reason") or {}).items():
            out.append(
                {"file": entry.get("name") or "", "line": "", "reason": f"{reason} ({n} rows)"}
            )
    if not out and label_result is not None:
        by_reason = (label_result.csv or {}).get("rejected_by_reason") or {}
        out = [{"file": "", "line": "", "reason": f"{r} ({n} rows)"} for r, n in by_reason.items()]
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
