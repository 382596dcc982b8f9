"""Run history and the nightly watermark: what `runs` shows and where the next nightly run starts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.state import history
from pipeline.window import Window

D = datetime(2026, 11, 20, tzinfo=UTC)
DAY = timedelta(days=1)


def day(n: int, days: int = 1) -> Window:
    return Window(D + n * DAY, D + (n + days) * DAY)


def test_runs_are_listed_newest_first_with_counts_and_duration(tmp_path: Path) -> None:
    """`runs` shows each run's window, status, counts and how long it took."""
    for i, status in enumerate(("ok", "partial")):
        history.record_started(
            tmp_path,
            run_id=f"r{i}",
            job="nightly",
            gateway_id="gw",
            window=day(i),
            mode="nightly",
            started_at=D + i * DAY,
        )
        history.record_finished(
            tmp_path,
            f"r{i}",
            status=status,
            counts={"patched": 10 + i},
            finished_at=D + i * DAY + timedelta(seconds=90),
        )
    runs = history.list_runs(tmp_path, job="nightly")
    assert [r.run_id for r in runs] == ["r1", "r0"]
    assert runs[0].status == "partial"
    assert runs[0].counts == {"patched": 11}
    assert runs[0].seconds == 90
    assert runs[0].window == day(1)


def test_resuming_a_run_counts_an_attempt(tmp_path: Path) -> None:
    """A run started again is `running` again and remembers it was attempted twice."""
    for started in (D, D + DAY):
        history.record_started(
            tmp_path,
            run_id="r",
            job="j",
            gateway_id="gw",
            window=day(0),
            mode="window",
            started_at=started,
        )
        if started == D:
            history.record_finished(tmp_path, "r", status="partial", counts={}, finished_at=D)
    record = history.get_run(tmp_path, "r")
    assert record is not None
    assert (record.status, record.attempts, record.finished_at) == ("running", 2, None)


def advance(data: Path, window: Window, *, may_start: bool = True) -> datetime | None:
    return history.advance_watermark(
        data, "j", "gw", window, run_id="r", now=D, may_start=may_start
    )


def test_first_nightly_run_sets_the_watermark_an_explicit_window_does_not(tmp_path: Path) -> None:
    """Running an old day by hand never makes the next nightly run catch up from that day."""
    assert advance(tmp_path, day(0), may_start=False) is None
    assert history.get_watermark(tmp_path, "j", "gw") is None
    advance(tmp_path, day(5))
    assert history.get_watermark(tmp_path, "j", "gw") == D + 6 * DAY


def test_first_nightly_run_marks_where_coverage_starts(tmp_path: Path) -> None:
    """The first night records its start, so if it fails the next night covers it again."""
    mark = history.start_watermark(tmp_path, "j", "gw", D, run_id="r", now=D)
    assert mark == D == history.get_watermark(tmp_path, "j", "gw")
    # Later nights never reset it.
    assert history.start_watermark(tmp_path, "j", "gw", D + DAY, run_id="r2", now=D) == D
    advance(tmp_path, day(0), may_start=False)
    assert history.get_watermark(tmp_path, "j", "gw") == D + DAY


def test_watermark_never_jumps_over_a_gap_or_backwards(tmp_path: Path) -> None:
    """Only a window touching the watermark moves it; an older window leaves it where it is."""
    advance(tmp_path, day(0))
    advance(tmp_path, day(3))  # days 1-2 are not done: no jump
    assert history.get_watermark(tmp_path, "j", "gw") == D + DAY
    advance(tmp_path, day(1, days=3))
    assert history.get_watermark(tmp_path, "j", "gw") == D + 4 * DAY
    advance(tmp_path, day(0))
    assert history.get_watermark(tmp_path, "j", "gw") == D + 4 * DAY


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(1, 4)), max_size=12))
def test_watermark_only_ever_moves_forward(windows: list[tuple[int, int]]) -> None:
    """Whatever order runs finish in, the watermark never goes back."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        last = None
        for start, length in windows:
            now = advance(data, day(start, length))
            assert now is not None
            if last is not None:
                assert now >= last
            last = now


def test_runs_started_in_the_same_second_never_share_a_folder(tmp_path: Path) -> None:
    """A thousand runs created with one timestamp each get their own folder and run.json."""
    from datetime import UTC, datetime

    from pipeline.state.store import create_run
    from pipeline.window import day_window

    now = datetime(2026, 11, 20, 2, tzinfo=UTC)
    window = day_window(now.date())
    runs = [create_run(tmp_path, "nightly", "gw", window, now=now) for _ in range(1000)]
    assert len({r.run_id for r in runs}) == 1000
    assert all(r.paths.info.is_file() for r in runs)
