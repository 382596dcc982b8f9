"""What the report reads: the files of one run folder, each read once here and never written.

The stage results (``<stage>.result.json``, each read by its stage's frozen result class, so the
report uses fields: a renamed one fails the type check instead of reading as 0), ``outcome.json``
(how the last invocation of the run ended: `pipeline.outcome.read_outcome`), ``rejects.json`` (the
label stage's copy of the inbox's rejected rows), ``label_analysis.json``, and the Parquet files
``plan.parquet`` and ``verify.parquet``. A stage result that is absent, does not parse or is not
that stage's result reads as None (the stage did not finish); outcome.json, rejects.json and the
label analysis are plain JSON by design (documented in `pipeline.outcome` and `pipeline.label`). A
Parquet file that cannot be read is named in a sentence for the report's problems instead of
stopping it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.extract import ExtractResult
from pipeline.label import LabelResult
from pipeline.load import LoadResult
from pipeline.outcome import read_outcome
from pipeline.plan import PlanResult
from pipeline.run_result import Stages
from pipeline.state.store import RunInfo
from pipeline.verify import VerifyResult

OUTCOME_FILE = "outcome.json"  # pipeline.outcome writes it at the end of every invocation
REJECTS_FILE = "rejects.json"  # written by the label stage (pipeline.label.REJECTS_FILE)


@dataclass(frozen=True)
class RunFolder:
    """Every JSON file of a run folder the report uses (the Parquet files are read later, by
    `pipeline.report.extras`, since only the tables beyond report.json need them)."""

    run: RunInfo
    results: Stages  # None for a stage that did not finish
    outcome: dict[str, Any]  # {} before the run's first attempt ended
    rejects: dict[str, Any] | None
    analysis: dict[str, Any] | None
    inbox: list[dict[str, Any]]  # every inbox file the label stage saw, with its status


def read_stages(run: RunInfo) -> Stages:
    """Each stage's result in the run folder, typed; None where the stage did not finish (or its
    file is damaged). The one place the report reads stage results. Fields a newer version added
    and an older file lacks take their defaults."""
    path = run.paths.stage_result
    return Stages(
        extract=ExtractResult.read(path("extract")),
        label=LabelResult.read(path("label")),
        plan=PlanResult.read(path("plan")),
        load=LoadResult.read(path("load")),
        verify=VerifyResult.read(path("verify")),
    )


def read_run_folder(run: RunInfo) -> RunFolder:
    results = read_stages(run)
    rejects = read_json(run.paths.root / REJECTS_FILE)
    analysis = read_json(run.paths.label_analysis)
    return RunFolder(
        run=run,
        results=results,
        outcome=read_outcome(run),
        rejects=rejects,
        analysis=analysis,
        inbox=inbox_files(rejects, analysis, results.label),
    )


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_parquet(path: Path, damaged: list[str]) -> pl.DataFrame | None:
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


def inbox_files(
    rejects: Mapping[str, Any] | None,
    analysis: Mapping[str, Any] | None,
    label_result: LabelResult | None,
) -> list[dict[str, Any]]:
    """Every inbox file the label stage saw, with its status: from rejects.json, or in a run folder
    from before it, the label analysis's CSV accounting, or the label result's."""
    label_csv = label_result.csv if label_result is not None else None
    for source in (rejects, (analysis or {}).get("csv"), label_csv):
        files = (source or {}).get("files" if source is rejects else "by_file")
        if isinstance(files, list):
            return [dict(f) for f in files if isinstance(f, Mapping)]
    return []
