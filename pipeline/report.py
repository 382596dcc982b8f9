"""Report: what a run did, from the stage results in its folder, as JSON, Markdown and HTML.

``report.json`` has the stable keys of DESIGN; ``report.md`` is for CI logs and chat;
``report.html`` is one self-contained file (inline CSS and SVG, no scripts, no network) for a
person: the headline status, numbers that add up, labels by source and by model, the feedback
distribution, the label analysis, requests over time against the budget, and failures and rejects
with their reasons.

This module gathers and judges the numbers; `pipeline.report_render` draws the Markdown and the
HTML (where every string that came from logs, CSV files or the API is HTML-escaped).

Status: ``ok`` — every planned change applied and verified (exit 0); ``partial`` — the run
finished but some changes failed, are pending or unverified (exit 1; the report lists them);
``failed`` — no plan, or nothing could be applied (exit 1). A log that disappeared between plan
and load (``gone``) is listed but does not make a run partial: there is nothing left to label.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipeline import store
from pipeline.config import JobConfig
from pipeline.plan import iso
from pipeline.report_render import MAX_ROWS, Extras, render_html, render_markdown
from pipeline.store import RunInfo

STAGES = ("extract", "label", "plan", "load", "verify")
FORMATS = ("json", "md", "html")

# The DESIGN keys of each section, and where each comes from in the stage results.
SECTION_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "extract": ("extract", ("logs", "requests", "partitions")),
    "plan": ("plan", ("patch", "unchanged", "keep_existing", "not_found")),
    "load": (
        "load",
        ("patched", "failed", "gone", "requests", "rate_limited", "retries", "seconds"),
    ),
    "verify": ("verify", ("verified", "mismatched", "unverifiable", "requests")),
}


@dataclass(frozen=True)
class ReportResult:
    run_id: str
    status: str  # ok | partial | failed
    exit_code: int
    data: dict[str, Any]  # report.json
    paths: dict[str, Path]

    def to_json(self) -> dict[str, Any]:
        return self.data

    def summary(self) -> str:
        return f"report {self.run_id}: {self.status}; " + ", ".join(
            f"{fmt} {path}" for fmt, path in self.paths.items()
        )


def exit_code_for(report: ReportResult | Mapping[str, Any]) -> int:
    """0 when every planned change was applied and verified, else 1 (the report says which)."""
    status = report.status if isinstance(report, ReportResult) else report.get("status")
    return 0 if status == "ok" else 1


def build_report(
    job: JobConfig | None, run: RunInfo, *, now: float | None = None, write: bool = True
) -> ReportResult:
    """Assemble report.json/.md/.html for a run from its folder. ``job`` may be None (the
    ``report`` command has only the run id); it only decides whether verification was expected."""
    results = {stage: _read(run.paths.stage_result(stage)) for stage in STAGES}
    data = assemble(run, results, job=job, now=now)
    extras = _extras(run, results, job)
    paths: dict[str, Path] = {}
    if write:
        paths["json"] = store.write_json_atomic(data, run.paths.report("json"))
        paths["md"] = store.write_text_atomic(render_markdown(data, extras), run.paths.report("md"))
        paths["html"] = store.write_text_atomic(render_html(data, extras), run.paths.report("html"))
    return ReportResult(run.run_id, data["status"], exit_code_for(data), data, paths)


def report(run_id: str, data_dir: Path, *, job: JobConfig | None = None) -> ReportResult:
    """The ``aigw-feedback report RUN_ID`` entry point."""
    return build_report(job, store.open_run(data_dir, run_id))


# ---------------------------------------------------------------------------------------------
# report.json


def assemble(
    run: RunInfo,
    results: Mapping[str, dict[str, Any] | None],
    *,
    job: JobConfig | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The report.json dict (DESIGN keys), computed from the stage results only."""

    def section(name: str) -> dict[str, Any]:
        stage, keys = SECTION_KEYS[name]
        res = results.get(stage)
        out: dict[str, Any] = {k: _number((res or {}).get(k)) for k in keys}
        out["ran"] = res is not None
        return out

    ex, lb, pl_, ld, vf = (results.get(s) for s in STAGES)
    label_sec: dict[str, Any] = {
        "total": (lb or {}).get("total"),
        "by_source": (lb or {}).get("by_source") or {},
        "conflicts": (lb or {}).get("conflicts"),
        "csv": {
            k: ((lb or {}).get("csv") or {}).get(k)
            for k in ("files", "rows", "accepted", "rejected")
        },
        "ran": lb is not None,
    }
    plan_sec = section("plan")
    plan_sec["labels"] = (pl_ or {}).get("labels")
    plan_sec["stamp_skipped"] = (pl_ or {}).get("stamp_skipped")
    load_sec = section("load")
    load_sec["pending"] = (ld or {}).get("pending")
    load_sec["stopped_early"] = bool((ld or {}).get("stopped_early"))
    load_sec["stop_reason"] = (ld or {}).get("stop_reason")

    requests_total = sum(
        int((r or {}).get(key) or 0)
        for r, key in ((ex, "requests"), (lb, "requests"), (pl_, "lookup_requests"),
                       (ld, "requests"), (vf, "requests"))
    )  # fmt: skip
    seconds_total = sum(float((r or {}).get("seconds") or 0.0) for r in (ex, lb, pl_, ld, vf))
    budget = _budget_per_s(job, ld, pl_)
    utilisation = (
        round(requests_total / (seconds_total * budget), 4)
        if seconds_total > 0 and budget
        else None
    )
    load_util = None
    if ld and budget and float(ld.get("seconds") or 0) > 0:
        load_util = round(int(ld.get("requests") or 0) / (float(ld["seconds"]) * budget), 4)

    status, problems = judge(results, job)
    finished = [str(r.get("finished_at")) for r in results.values() if r and r.get("finished_at")]
    return {
        "run_id": run.run_id,
        "job": run.job,
        "gateway_id": run.gateway_id,
        "window": run.to_json()["window"],
        "status": status,
        "exit_code": 0 if status == "ok" else 1,
        "problems": problems,
        "started_at": iso(run.created_at.timestamp()),
        "finished_at": max(finished) if finished else iso(now if now is not None else time.time()),
        "not_run": [s for s in STAGES if results.get(s) is None],
        "extract": section("extract"),
        "labels": label_sec,
        "plan": plan_sec,
        "load": load_sec,
        "verify": section("verify"),
        "requests": {
            "total": requests_total,
            "budget_per_s": budget,
            "utilisation": utilisation,
            "load_utilisation": load_util,
            "seconds": round(seconds_total, 3),
        },
    }


def _number(value: Any) -> Any:
    """A count where a stage lists the things (e.g. the extract's partition paths)."""
    return len(value) if isinstance(value, list | tuple | dict) else value


def judge(
    results: Mapping[str, dict[str, Any] | None], job: JobConfig | None = None
) -> tuple[str, list[str]]:
    """ok | partial | failed, and the reasons in plain words."""
    plan_, load_, verify_ = results.get("plan"), results.get("load"), results.get("verify")
    if plan_ is None:
        return "failed", ["no plan: the run stopped before the plan stage"]
    patches = int(plan_.get("patch") or 0)
    if patches == 0:
        return "ok", []
    if load_ is None:
        return "partial", [f"{patches} planned changes were not loaded (load did not run)"]
    problems = []
    patched = int(load_.get("patched") or 0)
    for key, text in (
        ("failed", "changes failed"),
        ("pending", "changes are still pending"),
    ):
        if n := int(load_.get(key) or 0):
            problems.append(f"{n} {text}")
    if load_.get("stopped_early"):
        problems.append(f"the load stopped early: {load_.get('stop_reason')}")
    verify_expected = job.verify.enabled if job is not None else plan_.get("verify_enabled", True)
    if verify_ is None:
        if verify_expected and patched:
            problems.append(f"{patched} applied changes were not verified (verify did not run)")
    else:
        for key, text in (("mismatched", "changes read back different"),
                          ("unverifiable", "changes could not be verified")):  # fmt: skip
            if n := int(verify_.get(key) or 0):
                problems.append(f"{n} {text}")
        unchecked = patched - int(verify_.get("checked", patched) or 0)
        if unchecked > 0:
            problems.append(f"{unchecked} applied changes were not read back")
    if not problems:
        return "ok", []
    if patched == 0:
        return "failed", ["nothing could be applied", *problems]
    return "partial", problems


def _budget_per_s(
    job: JobConfig | None, load_: dict[str, Any] | None, plan_: dict[str, Any] | None
) -> float | None:
    if job is not None:
        return round(job.budget.rate_per_second, 4)
    for res, key in ((load_, "budget_per_s"), (plan_, "rate_per_second")):
        if res and res.get(key):
            return round(float(res[key]), 4)
    return None


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ---------------------------------------------------------------------------------------------
# What the html and md show beyond report.json (read from the run's Parquet files)


def _extras(
    run: RunInfo,
    results: Mapping[str, dict[str, Any] | None],
    job: JobConfig | None,
) -> Extras:
    by_model: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    if run.paths.plan.exists():
        planned = pl.read_parquet(run.paths.plan)
        joined = planned.with_columns(
            pl.col("provider").fill_null("(unknown)"), pl.col("model").fill_null("(unknown)")
        )
        by_model = (
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
        names = {1: "+1 (good)", -1: "-1 (bad)", 0: "0 (not evaluated)"}
        before = dict(planned.group_by("current_feedback").len().iter_rows())
        after = dict(planned.group_by("desired_feedback").len().iter_rows())
        for value in (1, -1, 0, None):
            if before.get(value) or after.get(value):
                feedback.append(
                    {
                        "value": names.get(value, "none") if value is not None else "none",
                        "before": before.get(value, 0),
                        "after": after.get(value, 0),
                    }
                )
    analysis = _read(run.paths.label_analysis)
    label_result = results.get("label") or {}
    inbox = job.labels.csv.inbox if job is not None else None
    rejects = _rejects(label_result, inbox, run.run_id)
    timeline = [[int(a), int(b)] for a, b in (results.get("load") or {}).get("timeline", [])]
    return Extras(results, by_model, feedback, analysis, rejects, timeline)


def _rejects(
    label_result: Mapping[str, Any], inbox: Path | None, run_id: str
) -> list[dict[str, Any]]:
    """Rejected CSV rows with their reasons, from the rejects files the CSV labeler wrote beside
    the files it processed for this run (reject_line, reject_reason, reject_detail, then the
    original cells). Without them (no inbox known), the counts per reason."""
    csv_part = label_result.get("csv") or {}
    if csv_part.get("inbox"):  # where the label stage found the files wins over the job's setting
        inbox = Path(str(csv_part["inbox"]))
    files: list[tuple[str, Path]] = []
    out: list[dict[str, Any]] = []
    for entry in csv_part.get("by_file") or []:
        name = str(entry.get("name", ""))
        if entry.get("status") == "unreadable":
            out.append({"file": name, "line": "", "reason": entry.get("detail") or "unreadable"})
        elif entry.get("rejects_path") and inbox is not None:
            files.append((name, inbox / str(entry["rejects_path"])))
    if not files and inbox is not None:
        folder = inbox / "processed" / run_id
        files = [(p.name.replace(".rejects", ""), p) for p in sorted(folder.glob("*.rejects.csv"))]
    for name, path in files:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError:
            continue
        # The rejects file keeps the analyst's delimiter; its header starts with reject_line.
        delimiter = text[len("reject_line")] if text.startswith("reject_line") else ","
        for row in csv.DictReader(io.StringIO(text), delimiter=delimiter):
            reason = row.get("reject_reason") or ""
            if row.get("reject_detail"):
                reason = f"{reason}: {row['reject_detail']}"
            original = {k: v for k, v in row.items() if k and not k.startswith("reject_")}
            out.append(
                {
                    "file": name,
                    "line": row.get("reject_line") or "",
                    "reason": reason,
                    "row": json.dumps(original, ensure_ascii=False),
                }
            )
            if len(out) >= 10 * MAX_ROWS:
                return out
    if not files:
        for reason, n in (csv_part.get("rejected_by_reason") or {}).items():
            out.append({"file": "", "line": "", "reason": f"{reason} ({n} rows)"})
    return out


# ---------------------------------------------------------------------------------------------
# Shared: the sums a reader can check
