"""API list entries -> rows of LOG_SCHEMA, and the integer milliseconds extract works in.

The API speaks ISO-8601 with milliseconds and a Z (``pipeline.timefmt``); inside extract every
moment is an integer count of milliseconds since the epoch, which is exact (floats are not, at
this size) and is what the API's created_at filters and ordering resolve.

A row keeps every field of the entry: a value of an unexpected type (a string where a number
belongs, a field this schema does not know) goes, as JSON, to the ``extra`` column instead of
being dropped or failing the whole extract.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pipeline.errors import ApiError
from pipeline.gateway.client import LogEntry
from pipeline.timefmt import parse_iso

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
DAY_MS = 86_400_000

_INT_FIELDS = ("status_code", "step", "duration", "tokens_in", "tokens_out", "feedback")
_FLOAT_FIELDS = ("cost", "score")
_BOOL_FIELDS = ("success", "cached", "custom_cost")
_STR_FIELDS = (
    "id",
    "provider",
    "model",
    "model_type",
    "path",
    "request_type",
    "metadata",
    "request_content_type",
    "response_content_type",
)
# The entry's fields that get a column of their own (LOG_SCHEMA's, but for those log_row adds;
# tests/test_start.py holds the two together): everything else goes to `extra`. Listed, not read
# from LOG_SCHEMA, so that paging (which uses the helpers below) does not load pyarrow.
_KNOWN = {"created_at", *_STR_FIELDS, *_INT_FIELDS, *_FLOAT_FIELDS, *_BOOL_FIELDS}


def log_row(entry: LogEntry, stamp: int, extracted_at: int) -> dict[str, Any]:
    """One API entry -> one LOG_SCHEMA row; values of an unexpected type go to `extra`."""
    row: dict[str, Any] = {"created_at": stamp, "extracted_at": extracted_at}
    extra = {k: v for k, v in entry.items() if k not in _KNOWN}
    for name in _STR_FIELDS:
        value = entry.get(name)
        if name == "metadata" and value is not None and not isinstance(value, str):
            value = json.dumps(value, separators=(",", ":"))
        elif value is not None and not isinstance(value, str):
            extra[name], value = value, None
        row[name] = value
    for name in _INT_FIELDS:
        value = entry.get(name)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            extra[name], value = value, None
        row[name] = value
    for name in _FLOAT_FIELDS:
        value = entry.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            extra[name], value = value, None
        row[name] = value
    for name in _BOOL_FIELDS:
        value = entry.get(name)
        if value in (0, 1) and not isinstance(value, bool):
            value = bool(value)
        if value is not None and not isinstance(value, bool):
            extra[name], value = value, None
        row[name] = value
    if row["feedback"] is not None and not -128 <= row["feedback"] <= 127:
        extra["feedback"], row["feedback"] = row["feedback"], None
    row["feedback_shown"] = "feedback" in entry and "score" in entry
    row["extra"] = json.dumps(extra, sort_keys=True, default=str) if extra else None
    return row


def entry_ms(entry: LogEntry) -> int:
    """The entry's created_at in ms; an entry without a string id or a readable time is an
    ApiError (the answer cannot be paged on)."""
    if not isinstance(entry.get("id"), str):
        raise ApiError(f"the API returned a log without a string id: {sorted(entry)}")
    raw = entry.get("created_at")
    try:
        moment = parse_iso(str(raw))
    except ValueError:
        raise ApiError(f"log {entry.get('id')!r} has an unreadable created_at {raw!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // MS


# ---------------------------------------------------------------------------------------------
# Integer milliseconds and days


def ceil_ms(moment: datetime) -> int:
    """The first whole millisecond at or after `moment` (logs have ms precision)."""
    return -((EPOCH - moment) // MS)


def at_ms(ms: int) -> datetime:
    """The moment of `ms` (exact: no float on the way), for ``timefmt.iso_ms``."""
    return EPOCH + ms * MS


def day_date(day_number: int) -> date:
    """Day number (ms // DAY_MS) -> its UTC date."""
    return date(1970, 1, 1) + timedelta(days=day_number)


def day_number(day: date) -> int:
    """A UTC date -> its day number (ms // DAY_MS)."""
    return (day - date(1970, 1, 1)).days
