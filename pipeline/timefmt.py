"""The one place for formatting time: ISO-8601 for files and the API, durations for people.

iso(moment)        UTC ISO-8601 with a Z: seconds, or milliseconds where the moment has them;
                   a datetime or an epoch float (what clocks return)
iso_ms(moment)     always with milliseconds: the API's created_at precision, for filters
parse_iso(text)    the inverse of both (also accepts +00:00 offsets)
human(seconds)     "42 s", "12 min", "1.5 h": for summaries, tables and reports
"""

from __future__ import annotations

from datetime import UTC, datetime


def _utc(moment: datetime | float) -> datetime:
    if isinstance(moment, datetime):
        return moment.astimezone(UTC)
    return datetime.fromtimestamp(moment, UTC)


def iso(moment: datetime | float) -> str:
    """UTC ISO-8601 with a Z: seconds, or milliseconds where the moment has them."""
    utc = _utc(moment)
    if utc.microsecond // 1000:
        return iso_ms(utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_ms(moment: datetime | float) -> str:
    """UTC ISO-8601 with milliseconds and a Z, as the Logs API writes created_at."""
    utc = _utc(moment)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    """The inverse of `iso` and `iso_ms` (also accepts +00:00 offsets)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def human(seconds: float | None) -> str:
    """A duration for people: 42 s, 12 min, 1.5 h, 5.0 days ("-" when unknown)."""
    if seconds is None:
        return "-"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"
