"""Report: what a run did, from the files in its folder, as JSON, Markdown and HTML.

``report.json`` has the stable keys of DESIGN; ``report.md`` is for CI logs and chat;
``report.html`` is one self-contained file (inline CSS and SVG, no scripts, no network) for a
person: the headline status and its cause, numbers that add up, labels by source and by model, the
feedback distribution, the label analysis, requests over time against the budget, and failures and
rejects with their reasons.

This module gathers and judges the numbers; `pipeline.report_render` draws the Markdown and the
HTML (where every string that came from logs, CSV files or the API is HTML-escaped).

Everything comes from the run folder: the stage results, ``plan.parquet`` and ``verify.parquet``,
``rejects.json`` (the label stage's copy of the inbox's rejected rows) and ``outcome.json`` (how the
last invocation of the run ended, written by `pipeline.run`: the error, why it stopped, the requests
and seconds of every attempt). So `render_report` is a pure re-render: it reads only that folder and
writes nothing; `build_report` (the end of a run) also writes the three files into it.

Status: ``ok`` — every planned change applied and verified (exit 0); ``nothing_to_do`` — the plan
had no change to make and nothing went wrong (exit 0: a quiet night is a success); ``partial`` — some
changes were applied but others failed, are pending or unverified, or an error stopped the run
after some were applied (exit 1, or the error's exit code); ``failed`` — no plan, nothing could be
applied, or an error stopped the run before anything was (exit 1, or the error's: 3 for a refused
token). A log that disappeared between plan and load (``gone``) is listed but does not make a run
partial: there is nothing left to label. ``problems`` puts the cause first: the error, what stopped
the run, the inbox files that were not read; then what it left undone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from pipeline import store
from pipeline.config import BudgetConfig, JobConfig
from pipeline.report_render import Extras, render_html, render_markdown
from pipeline.store import RunInfo
from pipeline.timefmt import iso

STAGES = ("extract", "label", "plan", "load", "verify")
FORMATS = ("json", "md", "html")
OUTCOME_FILE = "outcome.json"  # written by pipeline.run at the end of every invocation
REJECTS_FILE = "rejects.json"  # written by the label stage (pipeline.label.REJECTS_FILE)
# Cloudflare's budget window. A run shorter than one window is measured against a whole one: the
# budget is "N requests per 5 minutes", and 8 requests in 0.3 s use 1% of it, not 700%.
DEFAULT_PERIOD_SECONDS = BudgetConfig().period_seconds
OK_STATUSES = ("ok", "nothing_to_do")

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

# How each kind of error in outcome.json is named at the head of the report.
ERROR_LEADS = {
    "auth": "the token was refused",
    "permission": "the token lacks a permission",
    "not_found": "not found",
    "unreachable": "the API could not be reached",
    "usage": "a usage or configuration error",
    "damaged": "a file of the run is damaged",
    "input": "an input cannot be used",
    "api": "the API refused a request",
    "internal": "an internal error",
}  # any other kind: "an error"


@dataclass(frozen=True)
class ReportResult:
    """A rendered report. ``texts`` holds report.json/.md/.html as text; ``paths`` where they are:
    written by this call (`build_report`, or `report` with ``out``), or else the run folder's
    existing report files (a pure re-render writes nothing)."""

    run_id: str
    status: str  # ok | nothing_to_do | partial | failed
    exit_code: int  # the run's: 0, 1, or the error's (e.g. 3 for a refused token)
    data: dict[str, Any]  # report.json
    paths: dict[str, Path]
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """The run succeeded: every planned change applied and verified, or nothing to do."""
        return self.status in OK_STATUSES

    def to_json(self) -> dict[str, Any]:
        return self.data

    def summary(self) -> str:
        return f"report {self.run_id}: {self.status}; " + ", ".join(
            f"{fmt} {path}" for fmt, path in self.paths.items()
        )


def exit_code_for(report: ReportResult | Mapping[str, Any]) -> int:
    """The run's exit code: 0 when it succeeded (ok, nothing to do), the error's exit code when an
    error stopped it (3 for a refused token), else 1 (the report says which changes)."""
    if isinstance(report, ReportResult):
        return report.exit_code
    if isinstance(report.get("exit_code"), int):
        return int(report["exit_code"])
    return 0 if report.get("status") in OK_STATUSES else 1


def render_report(job: JobConfig | None, run: RunInfo, *, now: float | None = None) -> ReportResult:
    """The report of a run, rendered from its folder alone; writes nothing. ``job`` may be None (the
    ``report`` command has only the run id): it only decides the budget and whether verification
    was expected when the run folder does not say."""
    results = {stage: _read(run.paths.stage_result(stage)) for stage in STAGES}
    outcome = _read(run.paths.root / OUTCOME_FILE)
    rejects = _read(run.paths.root / REJECTS_FILE)
    inbox = _inbox_files(rejects, _read(run.paths.label_analysis), results.get("label"))
    data = assemble(run, results, job=job, now=now, outcome=outcome, inbox=inbox)
    extras, damaged = _extras(run, results, rejects)
    data["problems"] += damaged
    texts = {
        "json": json.dumps(data, indent=2, default=str) + "\n",
        "md": render_markdown(data, extras),
        "html": render_html(data, extras),
    }
    existing = {fmt: run.paths.report(fmt) for fmt in FORMATS if run.paths.report(fmt).is_file()}
    return ReportResult(run.run_id, data["status"], data["exit_code"], data, existing, texts)


def write_report(result: ReportResult, folder: Path) -> ReportResult:
    """Write report.json/.md/.html into ``folder`` (atomically); the result with their paths."""
    paths = {
        fmt: store.write_text_atomic(result.texts[fmt], folder / f"report.{fmt}") for fmt in FORMATS
    }
    return replace(result, paths=paths)


def build_report(
    job: JobConfig | None, run: RunInfo, *, now: float | None = None, write: bool = True
) -> ReportResult:
    """The end of a run: render its report and write report.json/.md/.html into its folder."""
    result = render_report(job, run, now=time.time() if now is None else now)
    return write_report(result, run.paths.root) if write else result


def report(
    run_id: str, data_dir: Path, *, job: JobConfig | None = None, out: Path | None = None
) -> ReportResult:
    """The ``aigw-feedback report RUN_ID`` entry point: a pure re-render of the run folder, which
    it never writes to; with ``out``, report.json/.md/.html are written into that folder. An
    unknown run id is a usage error, and no folder is created for it."""
    result = render_report(job, store.open_run(data_dir, run_id))
    return write_report(result, out) if out is not None else result


# ---------------------------------------------------------------------------------------------
# report.json


def assemble(
    run: RunInfo,
    results: Mapping[str, dict[str, Any] | None],
    *,
    job: JobConfig | None = None,
    now: float | None = None,
    outcome: Mapping[str, Any] | None = None,
    inbox: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The report.json dict (DESIGN keys), computed from the run folder's files only."""
    outcome = outcome or {}

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

    # Requests actually sent and seconds actually spent: outcome.json counts every attempt of the
    # run (also those killed before a stage wrote its result); the stage results are the fallback.
    requests_total = _int(outcome.get("requests"))
    if requests_total is None:
        requests_total = sum(
            int((r or {}).get(key) or 0)
            for r, key in ((ex, "requests"), (lb, "requests"), (pl_, "lookup_requests"),
                           (ld, "requests"), (vf, "requests"))
        )  # fmt: skip
    seconds_total = _float(outcome.get("seconds"))
    if seconds_total is None:
        seconds_total = sum(float((r or {}).get("seconds") or 0.0) for r in (ex, lb, pl_, ld, vf))
    budget = _budget_per_s(job, ld, pl_, outcome)
    period = _period(job, outcome)
    utilisation = _share(requests_total, seconds_total, budget, period)
    load_util = _share(_int((ld or {}).get("requests")), _float((ld or {}).get("seconds")),
                       budget, period) if ld else None  # fmt: skip

    status, problems = judge(results, job, outcome=outcome, inbox=inbox)
    error = outcome.get("error") if isinstance(outcome.get("error"), Mapping) else None
    if error is not None and isinstance(error.get("exit_code"), int):
        exit_code = int(error["exit_code"])
    else:
        exit_code = 0 if status in OK_STATUSES else 1
    finished = [str(r.get("finished_at")) for r in results.values() if r and r.get("finished_at")]
    finished_at = outcome.get("finished_at") or (max(finished) if finished else None)
    return {
        "run_id": run.run_id,
        "job": run.job,
        "gateway_id": run.gateway_id,
        "window": run.to_json()["window"],
        "status": status,
        "exit_code": exit_code,
        "problems": problems,
        "error": dict(error) if error is not None else None,
        "stopped": outcome.get("stopped") or None,
        "attempts": _int(outcome.get("attempts")),
        "started_at": outcome.get("started_at") or iso(run.created_at.timestamp()),
        "finished_at": finished_at or (iso(now) if now is not None else None),
        "not_run": [s for s in STAGES if results.get(s) is None],
        "inbox": {"not_read": [f for f in inbox or [] if f.get("status") != "applied"]},
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
            "budget_period_seconds": period,
        },
    }


def _number(value: Any) -> Any:
    """A count where a stage lists the things (e.g. the extract's partition paths)."""
    return len(value) if isinstance(value, list | tuple | dict) else value


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _share(
    requests: int | None, seconds: float | None, budget: float | None, period: float
) -> float | None:
    """Requests sent ÷ the requests the budget allowed in the time spent (at least one period)."""
    if not budget or requests is None or (not requests and not seconds):
        return None
    return round(requests / (max(seconds or 0.0, period) * budget), 4)


def judge(
    results: Mapping[str, dict[str, Any] | None],
    job: JobConfig | None = None,
    *,
    outcome: Mapping[str, Any] | None = None,
    inbox: list[dict[str, Any]] | None = None,
) -> tuple[str, list[str]]:
    """ok | nothing_to_do | partial | failed, and the reasons in plain words, the cause first."""
    outcome = outcome or {}
    causes: list[str] = []
    error = outcome.get("error") if isinstance(outcome.get("error"), Mapping) else None
    if error is not None:
        causes.append(_error_text(error))
    stopped = str(outcome.get("stopped") or "")
    if stopped:
        causes.append(
            f"the run was {stopped}" if stopped.startswith("stopped ") else
            f"the run stopped early: {stopped}"
        )  # fmt: skip
    causes += [_inbox_text(f) for f in inbox or [] if f.get("status") != "applied"]
    causes += [f"a labeler failed: {e}" for e in (results.get("label") or {}).get("errors") or []]
    status, undone = _changes(results, job, stopped_known=bool(stopped))
    if error is not None:
        applied = int((results.get("load") or {}).get("patched") or 0)
        status = "partial" if applied else "failed"
    return status, causes + undone


def _changes(
    results: Mapping[str, dict[str, Any] | None], job: JobConfig | None, *, stopped_known: bool
) -> tuple[str, list[str]]:
    """The status by what happened to the planned changes, and what was left undone."""
    plan_, load_, verify_ = results.get("plan"), results.get("load"), results.get("verify")
    if plan_ is None:
        # A cap or a signal before the plan: unfinished, not failed (the next run continues it).
        return ("partial" if stopped_known else "failed"), [
            "no plan: the run stopped before the plan stage"
        ]
    patches = int(plan_.get("patch") or 0)
    if patches == 0:
        return "nothing_to_do", []
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
    if load_.get("stopped_early") and not stopped_known:
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
    stopped = stopped_known or bool(load_.get("stopped_early"))
    if patched == 0 and not stopped:
        return "failed", ["nothing could be applied", *problems]
    return "partial", problems  # some changes landed, or a cap/signal left the rest for later


def _error_text(error: Mapping[str, Any]) -> str:
    lead = ERROR_LEADS.get(str(error.get("kind")), "an error")
    stage = f" during {error['stage']}" if error.get("stage") else ""
    message = str(error.get("message") or "").strip()
    return f"{lead}{stage}: {message}" if message else f"{lead}{stage}"


def _inbox_text(entry: Mapping[str, Any]) -> str:
    """An inbox file that was not read, with its reason and where it went."""
    name, status = entry.get("name") or "?", str(entry.get("status") or "")
    detail = str(entry.get("detail") or "").strip()
    verb = {
        "unreadable": "could not be read",
        "already_applied": "was not applied again",
        "missing": "is missing",
    }.get(status, f"was not read ({status.replace('_', ' ')})")
    text = f"inbox file {name} {verb}" + (f": {detail}" if detail else "")
    if status == "unreadable" and entry.get("path"):
        text += f" (moved to {entry['path']} in the inbox)"
    return text


def _budget_per_s(
    job: JobConfig | None,
    load_: dict[str, Any] | None,
    plan_: dict[str, Any] | None,
    outcome: Mapping[str, Any],
) -> float | None:
    if job is not None:
        return round(job.budget.rate_per_second, 4)
    budget = _mapping(outcome.get("budget"))
    for res, key in ((budget, "per_s"), (load_, "budget_per_s"), (plan_, "rate_per_second")):
        if res and _float(res.get(key)):
            return round(float(res[key]), 4)
    return None


def _period(job: JobConfig | None, outcome: Mapping[str, Any]) -> float:
    if job is not None:
        return job.budget.period_seconds
    return _float(_mapping(outcome.get("budget")).get("period_seconds")) or DEFAULT_PERIOD_SECONDS


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _inbox_files(
    rejects: Mapping[str, Any] | None,
    analysis: Mapping[str, Any] | None,
    label_result: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """Every inbox file the label stage saw, with its status: from rejects.json, or in a run folder
    from before it, the label analysis's CSV accounting."""
    for source in (rejects, (analysis or {}).get("csv"), (label_result or {}).get("csv")):
        files = (source or {}).get("files" if source is rejects else "by_file")
        if isinstance(files, list):
            return [dict(f) for f in files if isinstance(f, Mapping)]
    return []


# ---------------------------------------------------------------------------------------------
# What the html and md show beyond report.json (read from the run's Parquet files)


def _extras(
    run: RunInfo,
    results: Mapping[str, dict[str, Any] | None],
    rejects: Mapping[str, Any] | None,
) -> tuple[Extras, list[str]]:
    """The tables beyond report.json, and a sentence for each file they could not be read from."""
    by_model: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    note: str | None = None
    damaged: list[str] = []
    planned = _parquet(run.paths.plan, damaged)
    if planned is not None:
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
        verified = _parquet(run.paths.verify, damaged)
        feedback, note = _feedback(planned, verified, results.get("load"))
    analysis = _read(run.paths.label_analysis)
    timeline = [[int(a), int(b)] for a, b in (results.get("load") or {}).get("timeline", [])]
    rows = _rejects(results.get("label") or {}, rejects)
    extras = Extras(results, by_model, feedback, analysis, rows, timeline, feedback_note=note)
    return extras, damaged


def _parquet(path: Path, damaged: list[str]) -> pl.DataFrame | None:
    """A Parquet file of the run, or None when it is absent or cannot be read (then said why)."""
    if not path.exists():
        return None
    try:
        return pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        damaged.append(
            f"{path.name} cannot be read ({reason}): the tables from it are missing; "
            f"`aigw-feedback {path.stem} JOB --run {path.parent.name}` writes it again"
        )
        return None


def _feedback(
    planned: pl.DataFrame, verified: pl.DataFrame | None, load_: Mapping[str, Any] | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Feedback on the labeled logs: before the run, as planned, and after — counting only what
    was written. Which changes were written is known per log from verify.parquet (every log the
    load finished, read back); without it only when none or all of them were."""
    patches = int((planned["action"] == "patch").sum())
    patched = int((load_ or {}).get("patched") or 0)
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
    label_result: Mapping[str, Any], rejects: Mapping[str, Any] | None
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
    if not out:
        by_reason = (label_result.get("csv") or {}).get("rejected_by_reason") or {}
        out = [{"file": "", "line": "", "reason": f"{r} ({n} rows)"} for r, n in by_reason.items()]
    return out
