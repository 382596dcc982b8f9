"""What the report reads: the files of one run folder, each read once here and never written.

The stage results (``<stage>.result.json``), ``outcome.json`` (how the last invocation of the run
ended, written by `pipeline.run`), ``rejects.json`` (the label stage's copy of the inbox's rejected
rows), ``label_analysis.json``, and the Parquet files ``plan.parquet`` and ``verify.parquet``. A file
that is absent or not a JSON object reads as None; a Parquet file that cannot be read is named in a
sentence for the report's problems instead of stopping it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.state.store import RunInfo

STAGES = ("extract", "label", "plan", "load", "verify")
OUTCOME_FILE = "outcome.json"  # written by pipeline.run at the end of every invocation
REJECTS_FILE = "rejects.json"  # written by the label stage (pipeline.label.REJECTS_FILE)


@dataclass(frozen=True)
class RunFolder:
    """Every JSON file of a run folder the report uses (the Parquet files are read later, by
    `pipeline.report.extras`, since only the tables beyond report.json need them)."""

    run: RunInfo
    results: Mapping[str, dict[str, Any] | None]  # by stage; None: the stage did not finish
    outcome: dict[str, Any] | None
    rejects: dict[str, Any] | None
    analysis: dict[str, Any] | None
    inbox: list[dict[str, Any]]  # every inbox file the label stage saw, with its status


def read_stage_result(run: RunInfo, stage: str) -> dict[str, Any] | None:
    """A stage's result file, or None when the stage did not finish (or its file is damaged).

    The one place the report reads stage results. They are plain dicts, read with ``.get`` in
    `assemble`, `judge` and `extras`; when every stage's typed result has ``from_json``, this is
    where they are built."""
    return read_json(run.paths.stage_result(stage))


def read_run_folder(run: RunInfo) -> RunFolder:
    results = {stage: read_stage_result(run, stage) for stage in STAGES}
    rejects = read_json(run.paths.root / REJECTS_FILE)
    analysis = read_json(run.paths.label_analysis)
    return RunFolder(
        run=run,
        results=results,
        outcome=read_json(run.paths.root / OUTCOME_FILE),
        rejects=rejects,
        analysis=analysis,
        inbox=inbox_files(rejects, analysis, results["label"]),
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
    label_result: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """Every inbox file the label stage saw, with its status: from rejects.json, or in a run folder
    from before it, the label analysis's CSV accounting."""
    for source in (rejects, (analysis or {}).get("csv"), (label_result or {}).get("csv")):
        files = (source or {}).get("files" if source is rejects else "by_file")
        if isinstance(files, list):
            return [dict(f) for f in files if isinstance(f, Mapping)]
    return []
