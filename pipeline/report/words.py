"""Plain words for what both reports show: every key of report.json, reason code and status a
person reads, in the words of the report (no snake_case reaches a reader).

report.json keeps its stable keys (DESIGN); this module is the one place that names them for people.
A key or code without words here is shown with its underscores as spaces, never as written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STAGE_TITLES = {
    "extract": "Extract: reading the window's logs",
    "label": "Label: response heads for the external labeler",
    "plan": "Plan: looking up logs outside the window",
    "load": "Load: writing feedback",
    "verify": "Verify: reading the changes back",
}
STAGE_NAMES = {"extract": "extract", "labels": "labels", "plan": "plan", "load": "load",
               "verify": "verify", "requests": "requests"}  # fmt: skip

# (section, key) -> words; the section's numbers are shown in this order.
FIELDS: dict[str, dict[str, str]] = {
    "extract": {"logs": "logs in the window", "requests": "requests",
                "partitions": "day files written"},
    "labels": {"total": "labels chosen", "conflicts": "logs whose sources disagree",
               "files": "CSV files", "rows": "CSV rows", "accepted": "rows accepted",
               "rejected": "rows rejected"},
    "plan": {"labels": "labeled logs", "patch": "to write", "unchanged": "already as labeled",
             "keep_existing": "kept: feedback set by someone else", "not_found": "log not found",
             "stamp_skipped": "run stamp left off"},
    "load": {"patched": "written", "failed": "failed", "gone": "log gone",
             "pending": "not yet written", "requests": "requests",
             "rate_limited": "answered 429 (rate limited)", "retries": "retries",
             "seconds": "seconds", "stopped_early": "stopped early",
             "stop_reason": "why it stopped", "rate_limiters": "limited by"},
    "verify": {"verified": "read back as written", "mismatched": "read back different",
               "unverifiable": "could not be read back", "requests": "requests"},
    "requests": {"total": "requests, every stage", "budget_per_s": "budget, requests per second",
                 "utilisation": "share of the budget used",
                 "load_utilisation": "share used while loading", "seconds": "seconds in all",
                 "budget_period_seconds": "budget window, seconds"},
}  # fmt: skip

# Why a number needs a sentence: shown next to it.
NOTES = {
    ("plan", "stamp_skipped"): (
        "the log's metadata already had 5 keys (the most the API keeps) or was not a map, so "
        "the stamp of which source and run wrote the label was not added; feedback and score "
        "were still written"
    ),
    ("plan", "keep_existing"): "another tool or a person set it; the job's policy keeps theirs",
    ("load", "rate_limited"): "each waited out and sent again; none failed a change",
}

REASONS = {
    "too_many_fields": "more cells than the header has columns",
    "missing_key": "no log id",
    "bad_log_id": "not a log id",
    "bad_feedback": "feedback not understood",
    "bad_score": "score not a number from 0 to 100",
    "no_label": "neither feedback nor score",
    "broken_quote": "a quote that never closes",
    "unknown_key": "matches no extracted log",
    "ambiguous_key": "matches several logs",
    "not_sent": "an answer for a log that was not sent",
}

FAILURES = {
    "failed": "write failed",
    "gone": "log gone",
    "mismatched": "read back different",
    "unverifiable": "could not be read back",
}

FILE_STATUSES = {
    "applied": "read",
    "already_applied": "already applied in an earlier run",
    "rejected": "refused",
    "unreadable": "could not be read",
    "skipped": "skipped",
}


def spaced(value: Any) -> str:
    """A code as words: underscores as spaces."""
    return str(value).replace("_", " ")


def field_name(section: str, key: str) -> str:
    return FIELDS.get(section, {}).get(key) or spaced(key)


def reason(code: Any, detail: Any = "") -> str:
    """A reject reason in words: the labeler's own sentence about the row where it gave one
    (it names the value: "score 150 is not a number from 0 to 100"), else the code's words."""
    return str(detail) if detail else REASONS.get(str(code), spaced(code))


def failure(code: Any) -> str:
    return FAILURES.get(str(code), spaced(code)) if code is not None else "–"


def file_status(code: Any) -> str:
    return FILE_STATUSES.get(str(code), spaced(code))


def section_items(section: str, values: Mapping[str, Any]) -> list[tuple[str, Any, str | None]]:
    """A report.json section as (words, value, note), in FIELDS' order then the rest; without
    ``ran`` and the values that say nothing (a stop reason of a load that did not stop)."""
    order = list(FIELDS.get(section, {}))
    keys = [k for k in order if k in values] + [k for k in values if k not in order]
    out = []
    for key in keys:
        value = values[key]
        if key == "ran" or (value is None and key in ("stop_reason", "rate_limiters")):
            continue
        if key == "stopped_early" and not value:
            continue
        note = NOTES.get((section, key)) if value else None
        out.append((field_name(section, key), value, note))
    return out
