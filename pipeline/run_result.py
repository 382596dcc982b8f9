"""What a run did: its stages' typed results, its status, and the lines a person reads.

``RunResult`` is what `run_job` returns and `aigw-feedback run` prints (``summary()``, or
``to_json()`` with ``--log-format json``). Its ``stages`` holds each stage's own frozen result
(``pipeline.result.StageResult``), read as fields: a renamed field fails the type check, it does
not read as 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.timefmt import human, iso
from pipeline.window import Window

if TYPE_CHECKING:
    from pipeline.extract import ExtractResult
    from pipeline.label import LabelResult
    from pipeline.load import LoadResult
    from pipeline.plan import PlanResult
    from pipeline.verify import VerifyResult

STAGES = ("extract", "label", "plan", "load", "verify")
BULKY_KEYS = ("timeline", "failures", "mismatches")  # in the run folder, not in the summary JSON


@dataclass(frozen=True)
class Stages:
    """The result of each stage that ran (None: it did not run in this run)."""

    extract: ExtractResult | None = None
    label: LabelResult | None = None
    plan: PlanResult | None = None
    load: LoadResult | None = None
    verify: VerifyResult | None = None

    @classmethod
    def of(cls, results: Mapping[str, Any]) -> Stages:
        """From stage name -> that stage's result."""
        return cls(**results)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in STAGES:
            result = getattr(self, name)
            if result is not None:
                data = result.to_json()
                out[name] = {k: v for k, v in data.items() if k not in BULKY_KEYS}
        return out

    def lines(self) -> list[str]:
        """One line per stage that ran."""
        out = []
        if (ex := self.extract) and ex.note.startswith("apply:"):
            out.append(f"extract  none ({ex.note.removeprefix('apply: ')})")
        elif ex:
            days = len(ex.partitions)
            out.append(
                f"extract  {ex.logs:,} logs, {ex.requests:,} requests, "
                f"{days} {'day' if days == 1 else 'days'} written"
            )
        if lb := self.label:
            parts = ", ".join(f"{k} {v:,}" for k, v in sorted(lb.by_source.items()))
            csv = lb.csv
            line = f"labels   {lb.total:,} labels" + (f" ({parts})" if parts else "")
            line += f", {lb.conflicts:,} conflicts"
            if csv.get("files"):
                line += (
                    f"; csv {csv.get('files', 0)} files, {csv.get('rows', 0):,} rows: "
                    f"{csv.get('accepted', 0):,} accepted, {csv.get('rejected', 0):,} rejected"
                )
            out.append(line)
            for entry in csv.get("not_read") or []:
                why = entry.get("detail") or entry.get("status")
                out.append(f"  not read: {entry.get('name')}: {why}")
        if pl_ := self.plan:
            out.append(
                f"plan     {pl_.patch:,} to patch, {pl_.unchanged:,} unchanged, "
                f"{pl_.keep_existing:,} kept, {pl_.not_found:,} not found"
            )
        if ld := self.load:
            line = f"load     {ld.patched:,} patched, {ld.failed:,} failed, {ld.gone:,} gone"
            if ld.pending:
                line += f", {ld.pending:,} pending"
            line += (
                f"; {ld.requests:,} requests ({ld.rate_limited} rate-limited) "
                f"in {human(ld.seconds)}"
            )
            out.append(line)
        if vf := self.verify:
            out.append(
                f"verify   {vf.verified:,} verified, {vf.mismatched:,} mismatched, "
                f"{vf.unverifiable:,} unverifiable" + (f", {vf.gone:,} gone" if vf.gone else "")
            )
        return out

    def counts(self) -> dict[str, int]:
        """The numbers the runs table keeps for `aigw-feedback runs`."""
        counts: dict[str, int] = {}
        if self.extract:
            counts["logs"] = self.extract.logs
        if self.label:
            counts["labels"] = self.label.total
        if self.plan:
            counts.update(patch=self.plan.patch, unchanged=self.plan.unchanged)
        if self.load:
            counts.update(
                patched=self.load.patched, failed=self.load.failed, pending=self.load.pending
            )
        if self.verify:
            counts.update(
                verified=self.verify.verified,
                mismatched=self.verify.mismatched,
                unverifiable=self.verify.unverifiable,
            )
        return counts


@dataclass(frozen=True)
class RunResult:
    """What one run did. ``exit_code`` follows DESIGN: 0 ok or nothing to do, 1 partial or failed
    (dry runs: 0); when the invocation finished earlier runs first (``previous``), the worst."""

    run_id: str
    job: str
    gateway_id: str
    window: Window
    mode: str  # nightly | window | backfill
    status: str  # ok | nothing_to_do | partial | failed | dry_run
    exit_code: int
    stages: Stages
    skipped: tuple[str, ...] = ()  # stages already complete from an earlier attempt
    stopped: str | None = None  # why the run stopped before the end (a cap, a signal)
    watermark: datetime | None = None  # the job's watermark after this run
    report: Path | None = None  # report.html
    requests: int = 0  # requests this invocation sent for this run
    seconds: float = 0.0
    previous: tuple[RunResult, ...] = ()  # unfinished runs this invocation finished first
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "job": self.job,
            "gateway_id": self.gateway_id,
            "window": {"start": iso(self.window.start), "end": iso(self.window.end)},
            "mode": self.mode,
            "status": self.status,
            "exit_code": self.exit_code,
            "skipped": list(self.skipped),
            "stopped": self.stopped,
            "watermark": iso(self.watermark) if self.watermark else None,
            "report": str(self.report) if self.report else None,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "counts": self.counts,
            "stages": self.stages.to_json(),
            "previous": [p.to_json() for p in self.previous],
        }

    def summary(self) -> str:
        """A few lines for a person (and for cron mail)."""
        lines = []
        for earlier in self.previous:
            lines += [earlier.summary(), ""]
        scope = "logs looked up by id" if self.mode == "apply" else f"window {self.window}"
        lines.append(
            f"run {self.run_id} ({self.mode}) job {self.job} gateway {self.gateway_id} {scope}"
        )
        if self.skipped:
            lines.append(f"  resumed: {', '.join(self.skipped)} already done")
        lines += [f"  {line}" for line in self.stages.lines()]
        lines.append(f"status {self.status}: {self._status_text()}")
        if self.watermark is not None and self.mode != "backfill":
            lines.append(f"watermark {iso(self.watermark)}")
        if self.report is not None:
            lines.append(f"report {self.report}")
        return "\n".join(lines)

    def _status_text(self) -> str:
        plan_ = self.stages.plan
        if self.status == "dry_run" and plan_ is not None:
            return (
                f"dry run, nothing written; {plan_.lookup_requests} requests spent on look-ups, "
                f"{plan_.requests_needed} more needed, about "
                f"{human(plan_.estimated_seconds)} at the budget. "
                f"Apply this plan with: aigw-feedback run JOB --run {self.run_id}"
            )
        if self.status == "ok":
            return "every planned change applied and verified"
        if self.status == "nothing_to_do":
            return "nothing to do: every label is already on its log (or there were no labels)"
        if self.stopped:
            return (
                f"stopped early ({self.stopped}); continue with: aigw-feedback run JOB "
                f"--run {self.run_id}"
            )
        return "some changes failed or are unverified (the report says which)"
