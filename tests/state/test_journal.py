"""The load journal: what a resumed load sends again, and what it never sends twice."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.state.journal import Journal


def test_rows_move_through_the_states_and_survive_reopening(tmp_path: Path) -> None:
    """Every status change is committed at once: a new connection (a new process) sees it."""
    with Journal.open(tmp_path, "run-1") as journal:
        assert journal.sync([("a", "h1"), ("b", "h2"), ("c", "h3"), ("d", "h4")]) == 4
        journal.mark_sent("a")
        journal.mark_done("a")
        journal.mark_sent("b")  # the process dies here, between send and acknowledgement
        journal.mark_sent("c")
        journal.mark_failed("c", "HTTP 503 after 5 attempts", 503)
    with Journal.open(tmp_path, "run-1") as journal:
        assert journal.counts() == {"pending": 1, "sent": 1, "done": 1, "failed": 1, "gone": 0}
        # done is never sent again; sent (unknown outcome), failed and pending are.
        assert sorted(journal.to_send()) == ["b", "c", "d"]
        row = next(r for r in journal.rows(["failed"]))
        assert (row.log_id, row.http_status, row.attempts) == ("c", 503, 1)
        assert row.error == "HTTP 503 after 5 attempts"


def test_runs_do_not_see_each_others_rows(tmp_path: Path) -> None:
    """Two runs in one data dir keep separate journals."""
    with Journal.open(tmp_path, "run-1") as one, Journal.open(tmp_path, "run-2") as two:
        one.sync([("a", "h")])
        two.sync([("a", "h"), ("b", "h")])
        one.mark_sent("a")
        one.mark_done("a")
        assert two.to_send() == ["a", "b"]
        assert one.to_send() == []


def test_syncing_a_remade_plan_resets_changed_bodies_and_drops_stale_rows(tmp_path: Path) -> None:
    """A done row is sent again only if the plan now wants a different body; dropped rows go away."""
    with Journal.open(tmp_path, "run-1") as journal:
        journal.sync([("a", "h1"), ("b", "h2"), ("c", "h3")])
        for log_id in ("a", "b"):
            journal.mark_sent(log_id)
            journal.mark_done(log_id)
        assert journal.sync([("a", "h1"), ("b", "CHANGED"), ("d", "h4")]) == 2
        assert sorted(journal.to_send()) == ["b", "d"]
        assert {r.log_id: r.status for r in journal.rows()} == {
            "a": "done",
            "b": "pending",
            "d": "pending",
        }


def test_budget_stop_puts_a_row_back_to_pending(tmp_path: Path) -> None:
    """A row whose PATCH never left (the run's cap was reached) is pending again, attempt undone."""
    with Journal.open(tmp_path, "run-1") as journal:
        journal.sync([("a", "h1")])
        journal.mark_sent("a")
        journal.mark_pending("a")
        (row,) = journal.rows()
        assert (row.status, row.attempts) == ("pending", 0)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 9), st.sampled_from(["sent", "done", "failed", "gone"])),
        max_size=40,
    )
)
def test_done_rows_are_never_offered_again(events: list[tuple[int, str]]) -> None:
    """Property: whatever happened, to_send never offers a done or gone row, and offers the rest."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, Journal.open(Path(tmp), "r") as journal:
        journal.sync([(f"l{i}", "h") for i in range(10)])
        final: dict[str, str] = {f"l{i}": "pending" for i in range(10)}
        for index, event in events:
            log_id = f"l{index}"
            if final[log_id] in ("done", "gone"):
                continue
            if event == "sent":
                journal.mark_sent(log_id)
            elif event == "done":
                journal.mark_done(log_id)
            elif event == "failed":
                journal.mark_failed(log_id, "boom", 500)
            else:
                journal.mark_gone(log_id, "not found")
            final[log_id] = event
        offered = set(journal.to_send())
        assert offered == {k for k, v in final.items() if v not in ("done", "gone")}
