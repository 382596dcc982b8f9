"""outcome.json: how a run's latest attempt ended, for the report and for the next attempt.

    {"run_id", "mode", "dry_run", "error": null | {"kind", "stage", "message", "exit_code"}, "stopped",
     "started_at", "finished_at", "seconds", "requests", "attempts", "budget": {"per_s",
     "period_seconds"}, "learned": [sentences]}

``seconds`` and ``requests`` add up over every attempt, so the report's budget share is of what was
really sent in the time really spent. ``error.kind`` (auth, not_found, unreachable, usage,
damaged, input, api, pipeline, internal) lets the report word the cause; ``message`` is already
redacted. ``learned``: what the run found out for free from its answers (a window with no logs, the
server's limit, others on the bucket; ``check.learned_by_run``). Written by `pipeline.run` whatever ended the attempt (done, a cap, a signal, an error).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pipeline.config import BudgetConfig
from pipeline.errors import (
    ApiError,
    AuthError,
    GatewayNotFoundError,
    InputError,
    PipelineError,
    StageError,
    TransportError,
    UsageError,
)
from pipeline.redaction import scrub
from pipeline.state import store
from pipeline.state.store import RunInfo
from pipeline.timefmt import iso


def error_kind(exc: BaseException) -> str:
    """What kind of failure stopped a run, for report.json's outcome (the report words it)."""
    kinds: tuple[tuple[type[BaseException], str], ...] = (
        (AuthError, "auth"),
        (GatewayNotFoundError, "not_found"),
        (TransportError, "unreachable"),
        (UsageError, "usage"),
        (StageError, "damaged"),
        (InputError, "input"),
        (ApiError, "api"),
        (PipelineError, "pipeline"),
    )
    return next((kind for cls, kind in kinds if isinstance(exc, cls)), "internal")


def read_outcome(run: RunInfo) -> dict[str, Any]:
    """The run's outcome.json, or {} before its first attempt ended."""
    try:
        data = json.loads(run.paths.outcome.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_outcome(
    run: RunInfo,
    *,
    mode: str,
    started: datetime,
    error: BaseException | None,
    stage: str | None,
    stopped: str | None,
    budget: BudgetConfig,
    dry_run: bool = False,
    requests: int,
    seconds: float,
    learned: list[str] | None = None,
) -> dict[str, Any]:
    """Write outcome.json for an attempt that ``started`` and is ending now (``stage``: the first
    stage it did not finish, where an ``error`` stopped it)."""
    before = read_outcome(run)
    described: dict[str, Any] | None = None
    if error is not None:
        message = (
            str(error)
            if isinstance(error, PipelineError)
            else f"unexpected {type(error).__name__}: {error}"
        )
        described = {
            "kind": error_kind(error),
            "stage": stage,
            "message": scrub(message) or type(error).__name__,
            "exit_code": getattr(error, "exit_code", 1),
        }
    outcome = {
        "run_id": run.run_id,
        "mode": mode,
        "dry_run": dry_run,
        "error": described,
        "stopped": stopped,
        "started_at": before.get("started_at") or iso(started),
        "finished_at": iso(datetime.now(UTC)),
        "seconds": round(float(before.get("seconds") or 0.0) + seconds, 3),
        "requests": int(before.get("requests") or 0) + requests,
        "attempts": int(before.get("attempts") or 0) + 1,
        "budget": {
            "per_s": round(budget.rate_per_second, 4),
            "period_seconds": budget.period_seconds,
        },
        # What the run found out for free from its answers (check.learned_by_run).
        "learned": list(learned or before.get("learned") or []),
    }
    store.write_json_atomic(outcome, run.paths.outcome)
    return outcome
