"""What report.md and report.html both show, as plain values: the headline, the sums that must
hold, the stage numbers and the rows of each table. The renderers only lay them out (and escape).

They read the report.json dict that `assemble` made, whose keys are always there (None where a
stage did not run): a key is read with ``[]``, so one renamed there fails here, not reads as 0."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.report import words
from pipeline.report.extras import Extras

MAX_ROWS = 50  # rows per failure / reject / model table in md and html

STATUS_SENTENCES = {
    "ok": "Every planned change was applied and verified.",
    "nothing_to_do": "Nothing to do: no label needed a change, and nothing went wrong.",
}

MODEL_HEADER = ("provider", "model")
CHANGE_HEADER = ("labels", "written", "+1 before → after", "-1 before → after",
                 "mean score before → after")  # fmt: skip
FEEDBACK_HEADER = ("feedback", "before", "planned", "after")
SCORE_HEADER = ("score", "before", "planned", "after")
FAILURE_HEADER = ("log", "what", "HTTP", "reason")
REJECT_HEADER = ("file", "line", "reason")  # the HTML adds the row itself
REQUESTS_HEADER = ("stage", "requests", "seconds", "peak per second", "counted")
OVERLAP_HEADER = ("sources", "logs labeled by both", "feedback agrees", "opposite feedback",
                  "score differs by (mean)")  # fmt: skip
FILES_HEADER = ("file", "status", "encoding", "rows", "accepted", "rejected", "labels")


def headline(data: Mapping[str, Any]) -> tuple[str | None, str | None, list[str]]:
    """What the report opens with: the cause of a failed or partial run (the first problem), or
    the sentence for its status; then the other problems (for an ok run: what to look at)."""
    status, problems = str(data["status"]), list(data["problems"])
    notes = [str(n) for n in data.get("notes") or []]  # what the run noticed (outcome "learned")
    if status in ("failed", "partial") and problems:
        return problems[0], None, problems[1:] + notes
    return None, STATUS_SENTENCES.get(status), problems + notes


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
    """A share as a percentage; under 1% with one decimal (0.1%), so a small share is not 0%."""
    if value is None:
        return "–"
    share_ = float(value) * 100
    return f"{share_:.1f}%" if 0 < share_ < 1 else f"{share_:.0f}%"


def share(value: Any) -> str:
    """A small share, to one decimal: 1.4%."""
    return "–" if value is None else f"{float(value) * 100:.1f}%"


def stage_numbers(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """One line of numbers per stage, and the requests, in words: "logs in the window 2,846 ·
    requests 61". A stage that did not run says so."""
    rows = []
    for name in ("extract", "labels", "plan", "load", "verify", "requests"):
        sec = dict(data[name])
        if name == "labels":
            sec = {k: v for k, v in sec.items() if k not in ("csv", "by_source")} | sec["csv"]
        if "ran" in sec and not sec["ran"]:
            rows.append((name, "not run"))
            continue
        items = words.section_items(name, sec)
        rows.append(
            (name, " · ".join(f"{label} {_shown(name, label, v)}" for label, v, _ in items))
        )
    return rows


def stage_items(
    data: Mapping[str, Any],
) -> list[tuple[str, bool, list[tuple[str, str, str | None]]]]:
    """Each stage's numbers as (title, ran, [(words, value, note)]), for the HTML's lists."""
    out = []
    for name in ("extract", "labels", "plan", "load", "verify", "requests"):
        sec = dict(data[name])
        if name == "labels":
            sec = {k: v for k, v in sec.items() if k not in ("csv", "by_source")} | sec["csv"]
        ran = bool(sec.get("ran", True))
        items = [(label, _shown(name, label, v), note)
                 for label, v, note in words.section_items(name, sec)]  # fmt: skip
        out.append((name, ran, items if ran else []))
    return out


def _shown(section: str, label: str, value: Any) -> str:
    if section == "requests" and "share" in label:
        return pct(value)
    return fmt(value)


def arrow(before: Any, after: Any) -> str:
    """before → after, as the report shows a change ("–" for what is not known)."""
    return f"{fmt(before)} → {fmt(after)}"


def score(value: Any) -> str:
    """A mean score, to one decimal."""
    return "–" if value is None else f"{float(value):.1f}"


def change_cells(row: Mapping[str, Any]) -> list[Any]:
    return [
        row["labels"],
        row["written"],
        arrow(row["good_before"], row["good_after"]),
        arrow(row["bad_before"], row["bad_after"]),
        f"{score(row['score_before'])} → {score(row['score_after'])}",
    ]


def source_rows(extras: Extras) -> list[list[Any]]:
    return [[r["source"], *change_cells(r)] for r in extras.by_source[:MAX_ROWS]]


def score_rows(extras: Extras) -> list[list[Any]]:
    rows = []
    for r in extras.score:
        shown = score if r["what"] == "mean score" else fmt
        rows.append([r["what"], *(shown(r[k]) for k in ("before", "planned", "after"))])
    return rows


def request_rows(extras: Extras) -> list[list[Any]]:
    """Per stage: requests, seconds, the peak (per second, or the stage's average), how counted."""
    rows = []
    for s in extras.stage_requests:
        if s.timeline:
            peak: float = max(n for _, n in s.timeline)
            how = "each second"
        else:
            peak = round(s.requests / max(s.seconds, 1.0), 2)
            how = "average over the stage"
        rows.append([words.STAGE_TITLES[s.stage], s.requests, s.seconds, peak, how])
    return rows


def coverage_rows(analysis: Mapping[str, Any] | None) -> list[list[Any]]:
    """Per source: labels, +1, -1, share of the window's logs, logs shared with another source."""
    sources = (analysis or {}).get("sources")
    if not isinstance(sources, Mapping):
        return []
    return [
        [name, s.get("labels"), s.get("positive"), s.get("negative"), share(s.get("coverage")),
         s.get("overlaps"), s.get("conflicts")]
        for name, s in sources.items()
        if isinstance(s, Mapping)
    ]  # fmt: skip


COVERAGE_HEADER = ("source", "labels", "+1", "-1", "share of the window's logs",
                   "shared with another source", "opposite feedback")  # fmt: skip


def overlap_rows(analysis: Mapping[str, Any] | None, level: str = "sources") -> list[list[Any]]:
    """Each pair of sources that labeled the same logs: how many, and how far they agree."""
    pairs = ((analysis or {}).get("agreement") or {}).get(level) or []
    rows = []
    for p in pairs:
        if not isinstance(p, Mapping):
            continue
        agree = (
            f"{fmt(p.get('agree'))} of {fmt(p.get('both_feedback'))} ({pct(p.get('agreement'))})"
            if p.get("both_feedback")
            else "–"
        )
        rows.append([f"{p.get('a')} & {p.get('b')}", p.get("overlap"), agree,
                     p.get("disagree"), p.get("score_mean_abs_diff")])  # fmt: skip
    return rows


def file_rows(extras: Extras) -> list[list[Any]]:
    """The inbox files the label stage read: no paths or hashes, what a person checks."""
    return [
        [f"{f.get('name')} · sheet {f['sheet']}" if f.get("sheet") else f.get("name"),
         words.file_status(f.get("status")), f.get("encoding"), f.get("rows"),
         f.get("accepted"), f.get("rejected"), f.get("labels")]
        for f in extras.csv_files[:MAX_ROWS]
    ]  # fmt: skip


def source_count(value: Any) -> Any:
    """The number of labels of one source (a count, or a map that holds one)."""
    if isinstance(value, Mapping):
        for key in ("labels", "total", "rows", "count"):
            if key in value:
                return value[key]
        return json.dumps(value)
    return value


def model_rows(extras: Extras) -> list[list[Any]]:
    return [[r["provider"], r["model"], *change_cells(r)] for r in extras.by_model[:MAX_ROWS]]


def feedback_rows(extras: Extras) -> list[list[Any]]:
    return [[r["value"], r["before"], r["planned"], r["after"]] for r in extras.feedback]


def failure_rows(extras: Extras) -> list[list[Any]]:
    return [
        [r["log_id"], words.failure(r["what"]), r["http"], r["reason"]]
        for r in extras.failures[:MAX_ROWS]
    ]


def reject_rows(extras: Extras, *, with_row: bool = False) -> list[list[Any]]:
    """file, line, the reason in words (the row's cells, as "column: value", with ``with_row``)."""
    rows = []
    for r in extras.rejects[:MAX_ROWS]:
        why = words.reason(r.get("reason"), r.get("detail"))
        if r.get("rows"):
            why = f"{why} ({fmt(r['rows'])} rows)"
        where = f"{r.get('file')} · sheet {r['sheet']}" if r.get("sheet") else r.get("file")
        row = [where, r.get("line"), why]
        rows.append([*row, r.get("row") or ""] if with_row else row)
    return rows


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
