"""The load journal: one row per (run, log) in state.sqlite, so a load can always resume.

    pending ──► sent ──► done       the PATCH was acknowledged (2xx)
                    ├──► failed     retries used up (5xx, transport) or a 400; retried by a re-run
                    └──► gone       404: the log no longer exists; never sent again

Every PATCH is bracketed: the row becomes ``sent`` (attempts + 1) in its own committed transaction
before the request, and ``done`` / ``failed`` / ``gone`` right after the answer. WAL mode makes each
of those commits survive the process being killed.

A re-run of the same run resumes:
- ``done`` rows are never sent again (with the same body hash);
- ``sent`` rows are what a crash leaves between a send and its acknowledgement. Nobody knows whether
  the API applied them, so they are sent again. That is safe: a PATCH is idempotent and the body is
  the same (it is fixed by the plan; its hash is in the row);
- ``failed`` rows are tried again; ``pending`` rows are sent for the first time.

The journal mirrors the latest plan: syncing with a re-made plan adds new rows, drops rows the plan no
longer patches, and sets a row back to ``pending`` when its body changed, even if it was ``done``.

Beside it, ``label_owners`` remembers, per gateway and log, which source's label this tool last
wrote (set in the same transaction as ``done``). A later run's plan reads it, so precedence holds
across runs: a rule or the judge does not replace what an analyst's CSV wrote last night, even when
the metadata stamp could not be added (the API's 5-entry cap) and the CSV has left the inbox.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.state.database import state_db

STATUSES = ("pending", "sent", "done", "failed", "gone")
RESENDABLE = ("pending", "sent", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS load_journal (
    run_id      TEXT NOT NULL,
    log_id      TEXT NOT NULL,
    body_hash   TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'sent', 'done', 'failed', 'gone')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    http_status INTEGER,
    error       TEXT,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (run_id, log_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS load_journal_status ON load_journal (run_id, status);
CREATE TABLE IF NOT EXISTS label_owners (
    gateway_id  TEXT NOT NULL,
    log_id      TEXT NOT NULL,
    source      TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    written_at  REAL NOT NULL,
    PRIMARY KEY (gateway_id, log_id)
) WITHOUT ROWID;
"""


_UPSERT_OWNER = (
    "INSERT INTO label_owners (gateway_id, log_id, source, run_id, written_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (gateway_id, log_id) DO UPDATE SET "
    "source = excluded.source, run_id = excluded.run_id, written_at = excluded.written_at"
)


@dataclass(frozen=True)
class JournalRow:
    log_id: str
    body_hash: str
    status: str
    attempts: int
    http_status: int | None
    error: str | None
    updated_at: float


class Journal:
    """The journal rows of one run. Each ``mark_*`` is one committed transaction."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        run_id: str,
        clock: Callable[[], float] = time.time,
        *,
        gateway_id: str | None = None,
    ) -> None:
        self._conn = conn
        self.run_id = run_id
        self.gateway_id = gateway_id
        self._clock = clock
        conn.executescript(_SCHEMA)

    @classmethod
    @contextmanager
    def open(
        cls,
        data_dir: Path,
        run_id: str,
        clock: Callable[[], float] = time.time,
        *,
        gateway_id: str | None = None,
    ) -> Iterator[Journal]:
        """The run's journal. With ``gateway_id``, ``mark_done(..., source=...)`` also records
        which source now owns the log's label."""
        with state_db(data_dir) as conn:
            yield cls(conn, run_id, clock, gateway_id=gateway_id)

    # -- the plan ---------------------------------------------------------------------------

    def sync(self, planned: Iterable[tuple[str, str]]) -> int:
        """Make the journal hold exactly these (log_id, body_hash) rows. Returns how many are new
        or were reset because their body changed."""
        now = self._clock()
        rows = [(self.run_id, log_id, digest, now) for log_id, digest in planned]
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS plan_ids (log_id TEXT PRIMARY KEY)")
            conn.execute("DELETE FROM plan_ids")
            conn.executemany("INSERT OR IGNORE INTO plan_ids VALUES (?)", ((r[1],) for r in rows))
            conn.execute(
                "DELETE FROM load_journal WHERE run_id = ? "
                "AND log_id NOT IN (SELECT log_id FROM plan_ids)",
                (self.run_id,),
            )
            after_delete = conn.total_changes
            conn.executemany(
                """
                INSERT INTO load_journal (run_id, log_id, body_hash, status, attempts, updated_at)
                VALUES (?, ?, ?, 'pending', 0, ?)
                ON CONFLICT (run_id, log_id) DO UPDATE SET
                    body_hash = excluded.body_hash, status = 'pending', attempts = 0,
                    http_status = NULL, error = NULL, updated_at = excluded.updated_at
                WHERE load_journal.body_hash != excluded.body_hash
                """,
                rows,
            )
            changed = conn.total_changes - after_delete
            conn.execute("DROP TABLE plan_ids")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return changed

    def claim(self, labels: Iterable[tuple[str, str]]) -> None:
        """Record (log_id, source) as this tool's for logs that already carry the label (the plan
        found them `unchanged`): they are held by that source as much as if it had written them."""
        if self.gateway_id is None:
            return
        now = self._clock()
        rows = [(self.gateway_id, log_id, source, self.run_id, now) for log_id, source in labels]
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_UPSERT_OWNER, rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- one PATCH --------------------------------------------------------------------------

    def mark_sent(self, log_id: str) -> None:
        self._set(log_id, "sent", attempts=True)

    def mark_done(self, log_id: str, http_status: int = 200, *, source: str | None = None) -> None:
        if source is None or self.gateway_id is None:
            self._set(log_id, "done", http_status=http_status)
            return
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._set(log_id, "done", http_status=http_status)
            conn.execute(
                _UPSERT_OWNER, (self.gateway_id, log_id, source, self.run_id, self._clock())
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def mark_failed(self, log_id: str, error: str, http_status: int | None = None) -> None:
        self._set(log_id, "failed", http_status=http_status, error=error)

    def mark_gone(self, log_id: str, error: str, http_status: int = 404) -> None:
        self._set(log_id, "gone", http_status=http_status, error=error)

    def mark_pending(self, log_id: str) -> None:
        """Back to pending: the run stopped (budget used up) before this PATCH went out."""
        self._set(log_id, "pending", attempts=False, undo_attempt=True)

    def _set(
        self,
        log_id: str,
        status: str,
        *,
        attempts: bool = False,
        undo_attempt: bool = False,
        http_status: int | None = None,
        error: str | None = None,
    ) -> None:
        delta = 1 if attempts else (-1 if undo_attempt else 0)
        self._conn.execute(
            "UPDATE load_journal SET status = ?, attempts = max(0, attempts + ?), "
            "http_status = coalesce(?, http_status), error = ?, updated_at = ? "
            "WHERE run_id = ? AND log_id = ?",
            (status, delta, http_status, error, self._clock(), self.run_id, log_id),
        )

    # -- reading ----------------------------------------------------------------------------

    def to_send(self) -> list[str]:
        """Rows a load should (re)send, oldest first: pending, sent (crash) and failed."""
        cur = self._conn.execute(
            "SELECT log_id FROM load_journal WHERE run_id = ? AND status IN (?, ?, ?) "
            "ORDER BY updated_at, log_id",
            (self.run_id, *RESENDABLE),
        )
        return [r[0] for r in cur]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        cur = self._conn.execute(
            "SELECT status, count(*) FROM load_journal WHERE run_id = ? GROUP BY status",
            (self.run_id,),
        )
        out.update({status: n for status, n in cur})
        return out

    def rows(self, statuses: Iterable[str] | None = None) -> list[JournalRow]:
        query = (
            "SELECT log_id, body_hash, status, attempts, http_status, error, updated_at "
            "FROM load_journal WHERE run_id = ?"
        )
        params: list[object] = [self.run_id]
        if statuses is not None:
            wanted = list(statuses)
            query += f" AND status IN ({', '.join('?' * len(wanted))})"
            params.extend(wanted)
        cur = self._conn.execute(query + " ORDER BY log_id", params)
        return [JournalRow(*r) for r in cur]


def label_owners(data_dir: Path, gateway_id: str, log_ids: Iterable[str]) -> dict[str, str]:
    """log_id -> the source whose label this tool last wrote to it, for the ids that have one."""
    with state_db(data_dir) as conn:
        conn.executescript(_SCHEMA)
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (log_id TEXT PRIMARY KEY)")
        conn.execute("DELETE FROM wanted")
        conn.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", ((i,) for i in log_ids))
        rows = conn.execute(
            "SELECT o.log_id, o.source FROM label_owners o JOIN wanted w USING (log_id) "
            "WHERE o.gateway_id = ?",
            (gateway_id,),
        ).fetchall()
        conn.execute("DROP TABLE wanted")
    return {str(log_id): str(source) for log_id, source in rows}


def journal_has_rows(data_dir: Path, run_id: str) -> bool:
    """Whether the journal holds anything for this run (False after a state database reset)."""
    with state_db(data_dir) as conn:
        conn.executescript(_SCHEMA)
        row = conn.execute("SELECT 1 FROM load_journal WHERE run_id = ? LIMIT 1", (run_id,))
        return row.fetchone() is not None
