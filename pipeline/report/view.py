"""What report.md and report.html both show, as plain values: the headline, the sums that must
hold, the stage numbers and the rows of each table. The renderers only lay them out (and escape).

They read the report.json dict that `assemble` made, whose keys are always there (None where a
stage did not run): a key is read with ``[]``, so one renamed there fails here, not reads as 0."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.report.extras import Extras

MAX_ROWS = 50  # rows per failure / reject / model table in md and html

STATUS_SENTENCES = {
    "ok": "Every planned change was applied and verified.",
    "nothing_to_do": "Nothing to do: no label needed a change, and nothing went wrong.",
}

MODEL_HEADER = ("provider", "model", "labels", "+1", "-1", "to patch")
FEEDBACK_HEADER = ("feedback", "before", "planned", "after")
FAILURE_HEADER = ("log", "what", "HTTP", "reason")
REJECT_HEADER = ("file", "line", "reason")  # the HTML adds the row itself


def headline(data: Mapping[str, Any]) -> tuple[str | None, str | None, list[str]]:
    """What the report opens with: the cause of a failed or partial run (the first problem), or
    the sentence for its status; then the other problems (for an ok run: what to look at)."""
    status, problems = str(data["status"]), list(data["problems"])
    if status in ("failed", "partial") and problems:
        return problems[0], None, problems[1:]
    return None, STATUS_SENTENCES.get(status), problems


def status_word(data: Mapping[str, Any]) -> str:
    return str(data["status"]).replace("_", " ").upper()


def sums(data: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """Equations that must hold between the sections, each with whether it does."""
    out: list[tuple[str, bool]] = []
    plan_, load_, verify_ = data["plan"], data["load"], data["verify"]
    if plan_["ran"]:
        parts = [plan_[k] or 0 for k in ("patch", "unchanged", "keep_existing", "not_found")]
        labels = plan_["labels"]
        labels = sum(parts) if labels is None else labels
        out.append(
            (
                f"labeled logs {labels:,} = {parts[0]:,} patch + {parts[1]:,} unchanged + "
                f"{parts[2]:,} kept + {parts[3]:,} not found",
                sum(parts) == labels,
            )
        )
    if plan_["ran"] and load_["ran"]:
        got = [load_[k] or 0 for k in ("patched", "failed", "gone", "pending")]
        out.append(
            (
                f"planned patches {plan_['patch'] or 0:,} = {got[0]:,} patched + {got[1]:,} failed "
                f"+ {got[2]:,} gone + {got[3]:,} pending",
                sum(got) == (plan_["patch"] or 0),
            )
        )
    if load_["ran"] and verify_["ran"]:
        got = [verify_[k] or 0 for k in ("verified", "mismatched", "unverifiable")]
        out.append(
            (
                f"patched {load_['patched'] or 0:,} = {got[0]:,} verified + {got[1]:,} mismatched "
                f"+ {got[2]:,} unverifiable",
                sum(got) == (load_["patched"] or 0),
            )
        )
    return out


def fmt(value: Any) -> str:
    """A value as a person reads it: – for none, yes/no, thousands separators, two decimals."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def pct(value: Any) -> str:
    return "–" if value is None else f"{float(value) * 100:.0f}%"


def stage_numbers(data: Mapping[str, Any], *, csv_each: bool = False) -> list[tuple[str, str]]:
    """One line of numbers per stage, and the requests. ``csv_each``: name "csv" before each of
    the label stage's CSV counts (the HTML's wording) rather than once (the Markdown's)."""
    rows = []
    for name in ("extract", "plan", "load", "verify"):
        sec = data[name]
        shown = ", ".join(f"{k} {fmt(v)}" for k, v in sec.items() if k != "ran")
        rows.append((name, shown if sec["ran"] else "not run"))
    lb = data["labels"]
    csv = [f"{k} {fmt(v)}" for k, v in lb["csv"].items()]
    if csv_each:
        labels = ", ".join(
            [f"total {fmt(lb['total'])}", f"conflicts {fmt(lb['conflicts'])}"]
            + [f"csv {c}" for c in csv]
        )
    else:
        labels = f"total {fmt(lb['total'])}, conflicts {fmt(lb['conflicts'])}, csv " + ", ".join(
            csv
        )
    rows.insert(1, ("labels", labels if lb["ran"] else "not run"))
    req = data["requests"]
    rows.append(
        (
            "requests",
            f"total {fmt(req['total'])}, budget {fmt(req['budget_per_s'])}/s, utilisation "
            f"{pct(req['utilisation'])} (load {pct(req['load_utilisation'])})",
        )
    )
    return rows


def source_count(value: Any) -> Any:
    """The number of labels of one source (a count, or a map that holds one)."""
    if isinstance(value, Mapping):
        for key in ("labels", "total", "rows", "count"):
            if key in value:
                return value[key]
        return json.dumps(value)
    return value


def model_rows(extras: Extras) -> list[list[Any]]:
    keys = ("provider", "model", "labels", "positive", "negative", "patch")
    return [[r[k] for k in keys] for r in extras.by_model[:MAX_ROWS]]


def feedback_rows(extras: Extras) -> list[list[Any]]:
    return [[r["value"], r["before"], r["planned"], r["after"]] for r in extras.feedback]


def failure_rows(extras: Extras) -> list[list[Any]]:
    return [[r["log_id"], r["what"], r["http"], r["reason"]] for r in extras.failures[:MAX_ROWS]]


def reject_rows(extras: Extras, *, with_row: bool = False) -> list[list[Any]]:
    keys = ("file", "line", "reason", "row") if with_row else REJECT_HEADER
    return [[r.get(k) for k in keys] for r in extras.rejects[:MAX_ROWS]]


def failure_count(data: Mapping[str, Any], extras: Extras) -> int:
    """Failed, gone, mismatched and unverifiable changes (the lists in the results are capped)."""
    ld, vf = data["load"], data["verify"]
    keys = [(ld, "failed"), (ld, "gone"), (vf, "mismatched"), (vf, "unverifiable")]
    return max(len(extras.failures), sum(int(sec[k] or 0) for sec, k in keys))


def rejected_count(data: Mapping[str, Any], extras: Extras) -> Any:
    return data["labels"]["csv"]["rejected"] or len(extras.rejects)


def more_rows(rows: Sequence[Any]) -> int:
    """How many rows a table capped at MAX_ROWS leaves out."""
    return max(len(rows) - MAX_ROWS, 0)
