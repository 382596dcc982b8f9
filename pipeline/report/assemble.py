"""report.json: the numbers of a run, in the stable keys of DESIGN, from its folder's files only.

Requests actually sent and seconds actually spent come from outcome.json, which counts every
attempt of the run (also those killed before a stage wrote its result); the stage results are the
fallback. The budget share is requests sent ÷ the requests the budget allowed in that time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.config import BudgetConfig, JobConfig
from pipeline.gateway.client import limiter_name
from pipeline.load import LoadResult
from pipeline.plan import PlanResult
from pipeline.report.judge import exit_code, judge, outcome_error
from pipeline.run_result import Stages
from pipeline.state.store import RunInfo
from pipeline.timefmt import iso

# Cloudflare's budget window. A run shorter than one window is measured against a whole one: the
# budget is "N requests per 5 minutes", and 8 requests in 0.3 s use 1% of it, not 700%.
DEFAULT_PERIOD_SECONDS = BudgetConfig().period_seconds

# The DESIGN keys of each stage's section, in report.json's order.
EXTRACT_KEYS = ("logs", "requests", "partitions")
# What changed while the extract read (extract.result.json has the rest: ranges, bounds).
EXTRACT_CHURN_KEYS = ("count_at_start", "arrived", "vanished", "changes_ahead", "unsettled_ranges")
PLAN_KEYS = ("patch", "unchanged", "keep_existing", "not_found")
LOAD_KEYS = ("patched", "failed", "gone", "requests", "rate_limited", "retries", "seconds")
VERIFY_KEYS = ("verified", "mismatched", "unverifiable", "requests")
CSV_KEYS = ("files", "rows", "accepted", "rejected")


def assemble(
    run: RunInfo,
    results: Stages,
    *,
    job: JobConfig | None = None,
    now: float | None = None,
    outcome: Mapping[str, Any] | None = None,
    inbox: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The report.json dict (DESIGN keys), computed from the run folder's files only."""
    outcome = outcome or {}
    ex, lb, pl_, ld, vf = results.extract, results.label, results.plan, results.load, results.verify
    ran = {"extract": ex, "label": lb, "plan": pl_, "load": ld, "verify": vf}

    label_sec: dict[str, Any] = {
        "total": lb.total if lb else None,
        "by_source": (lb.by_source or {}) if lb else {},
        "conflicts": lb.conflicts if lb else None,
        "csv": {k: (lb.csv or {}).get(k) if lb else None for k in CSV_KEYS},
        "ran": lb is not None,
    }
    plan_sec = _section(
        PLAN_KEYS, (pl_.patch, pl_.unchanged, pl_.keep_existing, pl_.not_found) if pl_ else None
    )
    plan_sec["labels"] = pl_.labels if pl_ else None
    plan_sec["stamp_skipped"] = pl_.stamp_skipped if pl_ else None
    load_numbers = (
        (ld.patched, ld.failed, ld.gone, ld.requests, ld.rate_limited, ld.retries, ld.seconds)
        if ld
        else None
    )
    load_sec = _section(LOAD_KEYS, load_numbers)
    load_sec["pending"] = ld.pending if ld else None
    load_sec["stopped_early"] = bool(ld.stopped_early) if ld else False
    load_sec["stop_reason"] = ld.stop_reason if ld else None
    # Which limiters answered 429, in words: the global one is expected to be rare; another
    # (code 10040 ...) is a Cloudflare limit of its own, honoured for its Retry-After.
    load_sec["rate_limiters"] = (
        ", ".join(f"{limiter_name(code)} ×{n}" for code, n in ld.rate_limited_by.items())
        if ld and ld.rate_limited_by
        else None
    )

    requests_total = _int(outcome.get("requests"))
    if requests_total is None:
        requests_total = sum(
            (
                ex.requests if ex else 0,
                lb.requests if lb else 0,
                pl_.lookup_requests if pl_ else 0,
                ld.requests if ld else 0,
                vf.requests if vf else 0,
            )
        )
    seconds_total = _float(outcome.get("seconds"))
    if seconds_total is None:
        seconds_total = sum(
            (
                float(ex.seconds) if ex else 0.0,
                float(lb.seconds) if lb else 0.0,
                float(pl_.seconds) if pl_ else 0.0,
                float(ld.seconds) if ld else 0.0,
                float(vf.seconds) if vf else 0.0,
            ),
            0.0,
        )
    budget = _budget_per_s(job, ld, pl_, outcome)
    period = _period(job, outcome)
    utilisation = _share(requests_total, seconds_total, budget, period)
    load_util = _share(ld.requests, float(ld.seconds), budget, period) if ld else None

    status, problems = judge(results, job, outcome=outcome, inbox=inbox)
    error = outcome_error(outcome)
    ends = (
        pl_.finished_at if pl_ else "",
        ld.finished_at if ld else "",
        vf.finished_at if vf else "",
    )
    finished = [str(t) for t in ends if t]
    finished_at = outcome.get("finished_at") or (max(finished) if finished else None)
    return {
        "run_id": run.run_id,
        "job": run.job,
        "gateway_id": run.gateway_id,
        "window": run.to_json()["window"],
        "status": status,
        "exit_code": exit_code(status, error),
        "problems": problems,
        # What the run found out for free from its answers: a window with no logs, the server's
        # limit, others on the bucket (check.learned_by_run). Worth a look; not a failure.
        "notes": [str(n) for n in outcome.get("learned") or []],
        "error": dict(error) if error is not None else None,
        "stopped": outcome.get("stopped") or None,
        "attempts": _int(outcome.get("attempts")),
        "started_at": outcome.get("started_at") or iso(run.created_at.timestamp()),
        "finished_at": finished_at or (iso(now) if now is not None else None),
        "not_run": [stage for stage, result in ran.items() if result is None],
        "inbox": {"not_read": [f for f in inbox or [] if f.get("status") != "applied"]},
        "extract": _section(
            EXTRACT_KEYS + EXTRACT_CHURN_KEYS,
            (
                ex.logs,
                ex.requests,
                len(ex.partitions),
                ex.count_at_start,
                ex.arrived,
                ex.vanished,
                ex.changes_ahead,
                len(ex.unsettled_ranges),
            )
            if ex
            else None,
        ),
        "labels": label_sec,
        "plan": plan_sec,
        "load": load_sec,
        "verify": _section(
            VERIFY_KEYS, (vf.verified, vf.mismatched, vf.unverifiable, vf.requests) if vf else None
        ),
        "requests": {
            "total": requests_total,
            "budget_per_s": budget,
            "utilisation": utilisation,
            "load_utilisation": load_util,
            "seconds": round(seconds_total, 3),
            "budget_period_seconds": period,
        },
    }


def _section(keys: tuple[str, ...], numbers: tuple[Any, ...] | None) -> dict[str, Any]:
    """A stage's section: its keys with the stage's numbers (each None when it did not run), and
    whether it ran."""
    values = numbers if numbers is not None else (None,) * len(keys)
    out: dict[str, Any] = dict(zip(keys, values, strict=True))
    out["ran"] = numbers is not None
    return out


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
    load_: LoadResult | None,
    plan_: PlanResult | None,
    outcome: Mapping[str, Any],
) -> float | None:
    if job is not None:
        return round(job.budget.rate_per_second, 4)
    for value in (
        _mapping(outcome.get("budget")).get("per_s"),
        load_.budget_per_s if load_ else None,
        plan_.rate_per_second if plan_ else None,
    ):
        if per_s := _float(value):
            return round(per_s, 4)
    return None


def _period(job: JobConfig | None, outcome: Mapping[str, Any]) -> float:
    if job is not None:
        return job.budget.period_seconds
    return _float(_mapping(outcome.get("budget")).get("period_seconds")) or DEFAULT_PERIOD_SECONDS


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
