"""report.json: the numbers of a run, in the stable keys of DESIGN, from its folder's files only.

Requests actually sent and seconds actually spent come from outcome.json, which counts every
attempt of the run (also those killed before a stage wrote its result); the stage results are the
fallback. The budget share is requests sent ÷ the requests the budget allowed in that time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.config import BudgetConfig, JobConfig
from pipeline.report.inputs import STAGES
from pipeline.report.judge import exit_code, judge, outcome_error
from pipeline.state.store import RunInfo
from pipeline.timefmt import iso

# Cloudflare's budget window. A run shorter than one window is measured against a whole one: the
# budget is "N requests per 5 minutes", and 8 requests in 0.3 s use 1% of it, not 700%.
DEFAULT_PERIOD_SECONDS = BudgetConfig().period_seconds

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
    error = outcome_error(outcome)
    finished = [str(r.get("finished_at")) for r in results.values() if r and r.get("finished_at")]
    finished_at = outcome.get("finished_at") or (max(finished) if finished else None)
    return {
        "run_id": run.run_id,
        "job": run.job,
        "gateway_id": run.gateway_id,
        "window": run.to_json()["window"],
        "status": status,
        "exit_code": exit_code(status, error),
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
