"""Windows: what a user types after --window, and how a window is cut into days."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import UsageError
from pipeline.window import Window, nightly_window, parse_window, split_days

NOW = datetime(2026, 11, 20, 13, 45, 1, 123456, tzinfo=UTC)
LATER = datetime(2031, 1, 1, tzinfo=UTC)  # after every generated range: none is in the future
NOV = lambda day, hour=0, minute=0: datetime(2026, 11, day, hour, minute, tzinfo=UTC)  # noqa: E731


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [
        ("yesterday", NOV(19), NOV(20)),
        ("2026-11-01", NOV(1), NOV(2)),
        ("2026-11-01..2026-11-07", NOV(1), NOV(8)),
        ("2026-11-01T00:00Z..2026-11-02T12:00Z", NOV(1), NOV(2, 12)),
        ("2026-11-01T06:30..2026-11-01T07:00", NOV(1, 6, 30), NOV(1, 7)),
        ("2026-11-01T01:00+01:00..2026-11-01T02:00+01:00", NOV(1), NOV(1, 1)),
        ("2026-11-01..2026-11-01T12:00Z", NOV(1), NOV(1, 12)),
        ("  2026-11-01  ", NOV(1), NOV(2)),
    ],
)
def test_specs_give_utc_half_open_windows(spec: str, start: datetime, end: datetime) -> None:
    """Each documented spec means what the help says; a date on the right includes that day."""
    window = parse_window(spec, now=NOW)
    assert (window.start, window.end) == (start, end)


def test_relative_specs_end_at_now_minus_the_lag() -> None:
    """today and last:N end `lag` before now (to the millisecond), so late logs are not cut off."""
    lag = 900
    horizon = datetime(2026, 11, 20, 13, 30, 1, 123000, tzinfo=UTC)
    assert parse_window("today", now=NOW, lag_seconds=lag) == Window(NOV(20), horizon)
    last = parse_window("last:24h", now=NOW, lag_seconds=lag)
    assert last == Window(horizon - timedelta(hours=24), horizon)
    assert parse_window("last:90m", now=NOW).duration == timedelta(minutes=90)
    assert parse_window("last:7d", now=NOW).duration == timedelta(days=7)


def test_nightly_takes_the_day_before_when_yesterday_is_not_old_enough() -> None:
    """At 00:05 with a 15-minute lag the nightly window is the day before yesterday."""
    early = datetime(2026, 11, 20, 0, 5, tzinfo=UTC)
    assert nightly_window(early, 900) == Window(NOV(18), NOV(19))
    assert nightly_window(early, 0) == Window(NOV(19), NOV(20))
    assert parse_window("yesterday", now=early, lag_seconds=900) == Window(NOV(18), NOV(19))


def test_a_naive_now_is_taken_as_utc_and_other_zones_are_converted() -> None:
    """Whatever zone `now` comes in, days are UTC days."""
    tokyo = timezone(timedelta(hours=9))
    assert nightly_window(datetime(2026, 11, 20, 8, 0, tzinfo=tokyo)) == Window(NOV(18), NOV(19))
    assert nightly_window(datetime(2026, 11, 20, 8, 0)) == Window(NOV(19), NOV(20))


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "tomorrow",
        "last:",
        "last:0h",
        "last:5y",
        "2026-13-01",
        "2026-11-02..2026-11-01",
        "2026-11-01T10:00..2026-11-01T10:00",
        "2026-11-01..soon",
    ],
)
def test_bad_specs_say_what_good_ones_look_like(spec: str) -> None:
    """A wrong window is a usage error (exit 2) that names the spec and shows examples."""
    with pytest.raises(UsageError) as info:
        parse_window(spec, now=NOW)
    message = str(info.value)
    assert repr(spec) in message
    assert "yesterday" in message and "2026-11-01..2026-11-07" in message


def test_today_right_after_midnight_is_an_error_not_an_empty_window() -> None:
    """Asking for today before any of it is `lag` old says so."""
    with pytest.raises(UsageError, match="nothing of today"):
        parse_window("today", now=datetime(2026, 11, 20, 0, 1, tzinfo=UTC), lag_seconds=900)


def test_days_lists_every_utc_date_touched() -> None:
    """A window from 22:00 to 02:00 touches two days; one ending at midnight touches one."""
    assert Window(NOV(1, 22), NOV(2, 2)).days() == [date(2026, 11, 1), date(2026, 11, 2)]
    assert Window(NOV(1), NOV(2)).days() == [date(2026, 11, 1)]
    assert Window(NOV(1), NOV(2)).covers_day(date(2026, 11, 1))
    assert not Window(NOV(1, 1), NOV(2)).covers_day(date(2026, 11, 1))


moments = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)


@given(start=moments, length=st.timedeltas(timedelta(microseconds=1), timedelta(days=40)))
def test_property_days_cover_the_window_exactly(start: datetime, length: timedelta) -> None:
    """Split pieces are in order, touch end to end, cover the window, each within one UTC day."""
    window = Window(start, start + length)
    pieces = split_days(window)
    assert pieces[0].start == window.start and pieces[-1].end == window.end
    for before, after in itertools.pairwise(pieces):
        assert before.end == after.start
        assert after.start.time() == datetime.min.time()
    for piece in pieces:
        assert piece.days() == [piece.start.date()]
    assert [p.start.date() for p in pieces] == window.days()
    assert sum((p.duration for p in pieces), timedelta()) == window.duration


@given(first=st.dates(date(2020, 1, 1), date(2030, 1, 1)), n=st.integers(0, 60))
def test_property_date_ranges_include_their_last_day(first: date, n: int) -> None:
    """A..B covers exactly the days A through B."""
    last = first + timedelta(days=n)
    window = parse_window(f"{first}..{last}", now=LATER)
    assert window.days() == [first + timedelta(days=i) for i in range(n + 1)]
    assert all(w.duration == timedelta(days=1) for w in split_days(window))


def test_a_window_in_the_future_is_refused_and_one_reaching_into_it_is_clipped() -> None:
    """Tomorrow is refused with a usage error; a range ending tomorrow stops at now - lag."""
    with pytest.raises(UsageError, match="future"):
        parse_window("2026-11-21", now=NOW, lag_seconds=900)
    window = parse_window("2026-11-19..2026-11-21", now=NOW, lag_seconds=900)
    assert window.start == datetime(2026, 11, 19, tzinfo=UTC)
    assert window.end == datetime(2026, 11, 20, 13, 30, 1, 123000, tzinfo=UTC)
