"""Time windows: UTC, half-open [start, end).

Specs a user can type (``--window`` or ``[window] default``)::

    yesterday                              the previous complete UTC day (at least `lag` old)
    today                                  today's UTC midnight .. now - lag
    last:24h  last:90m  last:7d            the duration ending at now - lag
    2026-11-01                             that UTC day
    2026-11-01..2026-11-07                 both days included: [Nov 1 00:00, Nov 8 00:00)
    2026-11-01T00:00Z..2026-11-02T12:00Z   an exact range; the end is excluded

Datetimes without an offset are taken as UTC. A date on the right of ``..`` means "through the end of
that day"; a datetime on the right is the excluded end.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from pipeline.errors import UsageError
from pipeline.timefmt import iso

log = logging.getLogger(__name__)

EXAMPLES = (
    "yesterday, today, last:24h, 2026-11-01, 2026-11-01..2026-11-07 (end day included) or "
    "2026-11-01T00:00Z..2026-11-02T12:00Z (end excluded)"
)
_DAY = timedelta(days=1)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LAST = re.compile(r"^last:\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


@dataclass(frozen=True, order=True)
class Window:
    start: datetime  # inclusive, tz-aware UTC
    end: datetime  # exclusive, tz-aware UTC

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware (UTC)")
        if self.end <= self.start:
            raise ValueError(f"window end {self.end} is not after its start {self.start}")

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def __str__(self) -> str:
        return f"{iso(self.start)}..{iso(self.end)}"

    def __contains__(self, moment: object) -> bool:
        return isinstance(moment, datetime) and self.start <= moment < self.end

    def days(self) -> list[date]:
        """The UTC dates this window touches (a partial day counts)."""
        first = self.start.astimezone(UTC).date()
        last = (self.end.astimezone(UTC) - timedelta(microseconds=1)).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def covers_day(self, day: date) -> bool:
        """True when the whole UTC day lies inside the window."""
        midnight = _midnight(day)
        return self.start <= midnight and midnight + _DAY <= self.end


def split_days(window: Window) -> list[Window]:
    """The window cut at UTC midnights, in order; the pieces cover it exactly, without overlap."""
    pieces = []
    start = window.start
    for day in window.days():
        end = min(_midnight(day) + _DAY, window.end)
        pieces.append(Window(start, end))
        start = end
    return pieces


def day_window(day: date) -> Window:
    return Window(_midnight(day), _midnight(day) + _DAY)


def nightly_window(now: datetime, lag_seconds: float = 0.0) -> Window:
    """The previous complete UTC day whose end is at least `lag_seconds` old.

    Logs can become visible a little after their created_at; at 00:05 with a 15-minute lag the
    nightly job therefore takes the day before yesterday, not a day that may still be filling in.
    """
    horizon = _utc(now) - timedelta(seconds=lag_seconds)
    end = _midnight(horizon.date())
    return Window(end - _DAY, end)


def parse_window(spec: str, *, now: datetime, lag_seconds: float = 0.0) -> Window:
    """A window spec (see the module docstring) -> Window. Raises UsageError with examples.

    Only the past can be labeled: a window that starts at or after ``now - lag`` is refused, and one
    that ends after it is clipped there (with a warning), so a run never records coverage of logs
    that cannot exist yet.
    """
    now = _utc(now).replace(microsecond=_utc(now).microsecond // 1000 * 1000)
    horizon = now - timedelta(seconds=lag_seconds)
    window = _parse(spec, now=now, horizon=horizon, lag_seconds=lag_seconds)
    if window.start >= horizon:
        raise _bad(
            spec,
            f"it starts in the future: with the job's lag of {lag_seconds:.0f} s the newest "
            f"logs that can be labeled are from before {iso(horizon)}",
        )
    if window.end > horizon:
        log.warning(
            "window %s ends in the future; taking %s (logs younger than the job's lag of %.0f s "
            "are left for a later run)",
            window,
            Window(window.start, horizon),
            lag_seconds,
        )
        return Window(window.start, horizon)
    return window


def _parse(spec: str, *, now: datetime, horizon: datetime, lag_seconds: float) -> Window:
    text = spec.strip()
    try:
        if text == "yesterday":
            return nightly_window(now, lag_seconds)
        if text == "today":
            start = _midnight(now.date())
            if horizon <= start:
                raise _bad(spec, f"nothing of today is {lag_seconds:.0f} s old yet")
            return Window(start, horizon)
        match = _LAST.match(text)
        if match:
            length = timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
            if length <= timedelta(0):
                raise _bad(spec, "the duration must be positive")
            return Window(horizon - length, horizon)
        if ".." in text:
            left, _, right = text.partition("..")
            start = _bound(left.strip(), spec, is_end=False)
            end = _bound(right.strip(), spec, is_end=True)
            if end <= start:
                raise _bad(spec, "the end is not after the start")
            return Window(start, end)
        if _DATE.match(text):
            return day_window(_date(text, spec))
    except ValueError as exc:  # a Window invariant; should not happen after the checks above
        raise _bad(spec, str(exc)) from None
    raise _bad(spec, "not a window")


def _bound(text: str, spec: str, *, is_end: bool) -> datetime:
    if _DATE.match(text):
        day = _date(text, spec)
        return _midnight(day + _DAY) if is_end else _midnight(day)
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise _bad(spec, f"{text!r} is neither a date nor an ISO datetime") from None
    return _utc(moment)


def _date(text: str, spec: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _bad(spec, f"{text!r} is not a valid date") from None


def _bad(spec: str, why: str) -> UsageError:
    return UsageError(f"window {spec!r}: {why}. Try one of: {EXAMPLES}")


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)
