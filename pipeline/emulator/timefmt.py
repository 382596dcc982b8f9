"""Millisecond timestamps <-> the API's ISO-8601 form (``2026-11-20T13:45:01.123Z``).

The Logs API compares ``created_at`` at millisecond precision, so the store keeps integer epoch
milliseconds and renders the ISO string on the way out; parsing accepts what clients send
(``Z`` or an offset, with or without fractions, or a bare date meaning midnight UTC).
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime


def ms_to_iso(ms: int) -> str:
    """``1763646301123`` -> ``'2025-11-20T13:45:01.123Z'`` (always UTC, always milliseconds)."""
    seconds, millis = divmod(int(ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def iso_to_ms(text: str) -> float:
    """Epoch milliseconds of an ISO-8601 string; naive times are UTC. Raises ValueError.

    A float is returned so that sub-millisecond precision in a filter value is not rounded away.
    """
    text = text.strip()
    if len(text) == 10:
        day = date.fromisoformat(text)
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    else:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    whole = int(moment.replace(microsecond=0).timestamp()) * 1000
    return whole + moment.microsecond / 1000


def to_ms(value: str | datetime | int | float) -> int:
    """Integer epoch milliseconds of an ISO string, a datetime (naive = UTC) or a number of ms."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.replace(microsecond=0).timestamp()) * 1000 + value.microsecond // 1000
    if isinstance(value, str):
        return int(iso_to_ms(value))
    return int(value)
