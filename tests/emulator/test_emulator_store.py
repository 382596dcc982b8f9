"""The SQLite store keeps gateways apart, survives a restart from a file, and tells ground truth."""

from __future__ import annotations

import threading

import pytest

from pipeline.emulator.seed import generate_logs
from pipeline.emulator.store import EmulatorStore

A, B = "a" * 32, "b" * 32


@pytest.fixture(scope="module")
def logs() -> list[dict]:
    return generate_logs(60, seed=2, start="2026-11-01T00:00:00Z", end="2026-11-02T00:00:00Z")


def test_gateways_and_accounts_are_isolated(logs):
    """Logs of one (account, gateway) are invisible to every other pair."""
    with EmulatorStore() as store:
        store.insert_logs(A, "gw", logs[:10])
        store.insert_logs(A, "other", logs[10:15])
        store.insert_logs(B, "gw", logs[15:17])
        assert [store.count(*pair) for pair in ((A, "gw"), (A, "other"), (B, "gw"))] == [10, 5, 2]
        assert store.get(A, "other", logs[0]["id"]) is None
        assert store.gateways() == [(A, "gw"), (A, "other"), (B, "gw")]


def test_file_database_persists_across_reopen(tmp_path, logs):
    """A file store keeps logs and feedback after closing and reopening (WAL mode)."""
    path = tmp_path / "emulator.sqlite"
    with EmulatorStore(path) as store:
        store.insert_logs(A, "gw", logs)
        gw = store.gateway_key(A, "gw")
        assert gw is not None
        store.gw_patch(gw, logs[0]["id"], {"feedback": 1})
    with EmulatorStore(path) as store:
        assert store.count(A, "gw") == len(logs)
        assert store.get(A, "gw", logs[0]["id"])["feedback"] == 1
        mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_insert_is_an_upsert_by_id(logs):
    """Inserting a log with an existing id replaces it instead of duplicating."""
    with EmulatorStore() as store:
        store.insert_logs(A, "gw", logs[:5])
        store.insert_logs(A, "gw", [{**logs[0], "model": "changed"}])
        assert store.count(A, "gw") == 5
        assert store.get(A, "gw", logs[0]["id"])["model"] == "changed"


def test_get_returns_the_full_stored_log(logs):
    """get returns every field of the stored-log shape, metadata as a dict, bodies parsed."""
    with EmulatorStore() as store:
        store.insert_logs(A, "gw", logs)
        for log in logs:
            stored = store.get(A, "gw", log["id"])
            assert stored == {key: log.get(key) for key in stored}
            assert set(log) <= set(stored)


def test_ids_between_is_start_inclusive_end_exclusive(logs):
    """ids_between(start, end) has start <= created_at < end, oldest first."""
    with EmulatorStore() as store:
        store.insert_logs(A, "gw", logs)
        start, end = logs[10]["created_at"], logs[20]["created_at"]
        expected = [
            g["id"]
            for g in sorted(logs, key=lambda g: (g["created_at"], g["id"]))
            if start <= g["created_at"] < end
        ]
        assert store.ids_between(A, "gw", start, end) == expected
        assert store.ids_between(A, "missing", start, end) == []


def test_a_log_without_required_fields_is_refused():
    """Inserting a log that lacks required fields fails and names them."""
    with EmulatorStore() as store, pytest.raises(ValueError, match="provider"):
        store.insert_logs(A, "gw", [{"id": "x", "created_at": "2026-11-01T00:00:00Z"}])


def test_concurrent_readers_and_writers_do_not_corrupt(logs):
    """The store can be used from several threads at once (server thread + test thread)."""
    with EmulatorStore() as store:
        store.insert_logs(A, "gw", logs)
        gw = store.gateway_key(A, "gw")
        assert gw is not None
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                for i, log in enumerate(logs):
                    store.gw_patch(gw, log["id"], {"score": i})
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer) for _ in range(3)]
        for thread in threads:
            thread.start()
        for _ in range(50):
            assert store.count(A, "gw") == len(logs)
        for thread in threads:
            thread.join()
        assert not errors
        assert store.get(A, "gw", logs[-1]["id"])["score"] == len(logs) - 1
