"""The budget's shared state in SQLite: every process on this machine that draws on one bucket
meets here (recent sends and when each was answered, the pace's clock, 429 pauses, others' use).

``try_acquire`` is the one decision, in one transaction: may a request go now, and if not, for how
long to wait. The rules it enforces are drawn in ``pipeline.gateway.budget``'s docstring.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_PAUSE_SECONDS = 7200.0
MAX_PER_SECOND_PER_IP = 200.0  # Cloudflare's per-client-IP limit; it cannot be raised
MAX_FLIGHT_SECONDS = 120.0  # a request with no recorded answer (a crashed process) counts this long


def default_state_path() -> Path:
    """Where processes on this machine meet to share a token's budget."""
    return Path("~/.cache/aigw-feedback/budget.sqlite").expanduser()


@dataclass(frozen=True)
class Limits:
    """What try_acquire enforces: (seconds, most requests in any such seconds) and a pace."""

    windows: tuple[tuple[float, float], ...]
    rate: float


# When a request stops counting: its answer's time, or (no answer recorded) long after it was sent.
_COUNTED_UNTIL = f"coalesce(done, t + {MAX_FLIGHT_SECONDS})"


class SharedState:
    """The token's budget state in SQLite: recent sends (and when each was answered), the GCRA
    clock, pauses, others' use."""

    def __init__(self, path: Path, key: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.key = key
        self.conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA busy_timeout=30000")
        # Commits need not reach the disk: after a crash the budget at worst forgets a few sends.
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS budget_sends (key TEXT NOT NULL, t REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS budget_sends_key_t ON budget_sends (key, t);
            CREATE INDEX IF NOT EXISTS budget_sends_t ON budget_sends (t);
            CREATE TABLE IF NOT EXISTS budget_state (
                key TEXT PRIMARY KEY, tat REAL NOT NULL DEFAULT 0,
                paused_until REAL NOT NULL DEFAULT 0,
                foreign_use REAL NOT NULL DEFAULT 0, foreign_at REAL NOT NULL DEFAULT 0
            );
            """
        )
        self._add_done_column()
        self.conn.execute("INSERT OR IGNORE INTO budget_state (key) VALUES (?)", (key,))

    def _add_done_column(self) -> None:
        """Files from before answers were recorded: their rows count MAX_FLIGHT_SECONDS longer."""
        columns = {row[1] for row in self.conn.execute("PRAGMA table_info(budget_sends)")}
        if "done" not in columns:
            try:
                self.conn.execute("ALTER TABLE budget_sends ADD COLUMN done REAL")
            except sqlite3.OperationalError:  # another process added it first
                columns = {row[1] for row in self.conn.execute("PRAGMA table_info(budget_sends)")}
                if "done" not in columns:
                    raise

    def try_acquire(
        self,
        now: float,
        limits_for: Callable[[float], Limits],
        *,
        foreign_for: float,
        burst: int,
    ) -> tuple[float, bool, int]:
        """Take a slot now and return (0, False, its row), or (seconds to wait > 0, is a 429 pause,
        -1)."""
        with self._transaction() as cur:
            tat, paused_until, foreign, foreign_at = cur.execute(
                "SELECT tat, paused_until, foreign_use, foreign_at FROM budget_state WHERE key = ?",
                (self.key,),
            ).fetchone()
            if not 0 <= now - foreign_at <= foreign_for:
                foreign = 0.0  # an old sighting: those requests have left the window
            limits = limits_for(foreign)
            horizon = max(width for width, _ in limits.windows)
            # State from a clock that disagrees with ours (a test's fake clock, a clock set back)
            # cannot be honoured: a pace slot or a pause that far ahead never comes from us.
            if tat > now + horizon:
                tat = now
            if paused_until > now + MAX_PAUSE_SECONDS:
                paused_until = 0.0
            if paused_until > now:
                return max(paused_until - now, 1e-6), True, -1
            cur.execute(
                # `t <= ?` first (an answer comes after its send), so the (key, t) index finds
                # the old rows instead of every row of the key being read on every attempt.
                "DELETE FROM budget_sends WHERE key = ?"
                f" AND ((t <= ? AND {_COUNTED_UNTIL} <= ?) OR t > ?)",
                (self.key, now - horizon, now - horizon, now + 1.0),
            )
            wait = 0.0
            for width, cap in limits.windows:
                # A request may be counted by the server until its answer is back: it frees a
                # slot `width` seconds after that.
                where = f"key = ? AND t > ? AND {_COUNTED_UNTIL} > ?"
                args = (self.key, now - width - MAX_FLIGHT_SECONDS, now - width)
                counted = cur.execute(f"SELECT count(*) FROM budget_sends WHERE {where}", args)
                sent = int(counted.fetchone()[0])
                if sent >= cap:
                    # When the slot that must free is a request still in flight, its answer may
                    # come any moment: wait as if it came now and look again (not for the two
                    # minutes an unanswered request counts).
                    nth = cur.execute(
                        "SELECT coalesce(done, ?) AS u FROM budget_sends"
                        f" WHERE {where} ORDER BY u LIMIT 1 OFFSET ?",
                        (now, *args, int(sent - cap)),
                    ).fetchone()
                    wait = max(wait, nth[0] + width - now)
            # Cloudflare's per-IP limit, over every token this machine uses: bursts, but at most
            # MAX_PER_SECOND_PER_IP in any second.
            last_second = (now - 1.0, now)
            recent = cur.execute(
                "SELECT count(*) FROM budget_sends WHERE t > ? AND t <= ?", last_second
            ).fetchone()[0]
            if recent >= MAX_PER_SECOND_PER_IP:
                nth = cur.execute(
                    "SELECT t FROM budget_sends WHERE t > ? AND t <= ? ORDER BY t LIMIT 1 OFFSET ?",
                    (*last_second, int(recent - MAX_PER_SECOND_PER_IP)),
                ).fetchone()
                wait = max(wait, nth[0] + 1.0 - now)
            if wait > 0:
                # Never 0: with epoch-sized floats the difference can round away entirely.
                return max(wait, 1e-6), False, -1
            interval = 1.0 / limits.rate
            tolerance = interval * max(0, burst - 1)
            tat = max(tat, now)
            if tat - now > tolerance:
                return max((tat - now) - tolerance, 1e-6), False, -1
            cur.execute("UPDATE budget_state SET tat = ? WHERE key = ?", (tat + interval, self.key))
            cur.execute("INSERT INTO budget_sends (key, t) VALUES (?, ?)", (self.key, now))
            return 0.0, False, int(cur.lastrowid or 0)

    def answered(self, row: int, when: float) -> None:
        """The request of `row` has its answer: from now it frees its slot a window after `when`."""
        with self._transaction() as cur:
            cur.execute(
                "UPDATE budget_sends SET done = ? WHERE rowid = ? AND key = ?",
                (when, row, self.key),
            )

    def pause_until(self, until: float) -> None:
        with self._transaction() as cur:
            cur.execute(
                "UPDATE budget_state SET paused_until = max(paused_until, ?) WHERE key = ?",
                (until, self.key),
            )

    def set_foreign(self, foreign: float, now: float) -> None:
        with self._transaction() as cur:
            cur.execute(
                "UPDATE budget_state SET foreign_use = ?, foreign_at = ? WHERE key = ?",
                (foreign, now, self.key),
            )

    def counted_since(self, since: float, now: float) -> int:
        """Our requests the server may still count in a window starting at `since`."""
        row = self.conn.execute(
            f"SELECT count(*) FROM budget_sends WHERE key = ? AND t > ? AND t <= ?"
            f" AND {_COUNTED_UNTIL} > ?",
            (self.key, since - MAX_FLIGHT_SECONDS, now + 1.0, since),
        ).fetchone()
        return int(row[0])

    @contextlib.contextmanager
    def _transaction(self) -> Any:
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        else:
            cur.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()
