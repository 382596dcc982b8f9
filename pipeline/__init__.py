"""aigw-feedback: put labels onto Cloudflare AI Gateway logs in bulk, and prove they landed.

The public API, for schedulers and notebooks that call the job from Python (Airflow, Dagster)::

    import asyncio
    import pipeline

    job = pipeline.load_job("jobs/nightly.toml")
    result = asyncio.run(pipeline.run_job(job))
    print(result.summary()); raise SystemExit(result.exit_code)

Each stage is callable on its own (``extract``, ``label``, ``plan``, ``load``, ``verify``) and returns
a frozen result with ``to_json()``, ``summary()`` and ``exit_code``. Names are imported on first use,
so ``import pipeline`` (and ``aigw-feedback --help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "load_job": "pipeline.config",
    "JobConfig": "pipeline.config",
    "run_job": "pipeline.run",
    "RunResult": "pipeline.run_result",
    "backfill": "pipeline.backfill",
    "BackfillResult": "pipeline.backfill",
    "extract": "pipeline.extract",
    "ExtractResult": "pipeline.extract",
    "label": "pipeline.label",
    "LabelResult": "pipeline.label",
    "plan": "pipeline.plan",
    "PlanResult": "pipeline.plan",
    "load": "pipeline.load",
    "LoadResult": "pipeline.load",
    "verify": "pipeline.verify",
    "VerifyResult": "pipeline.verify",
    "build_report": "pipeline.report",
    "render_report": "pipeline.report",
    "ReportResult": "pipeline.report",
    "open_client": "pipeline.gateway",
    "PipelineError": "pipeline.errors",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
