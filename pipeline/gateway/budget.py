"""The request budget: one pace for every request a job makes, shared by every process on one token.

Cloudflare allows 1200 requests per 5 minutes per token and blocks the token for 5 minutes when that
is exceeded, so a 429 costs far more than waiting. Before each request ``slot()`` waits until all of
these hold:

* no 429 pause is running (a 429 pauses every worker of every process until Retry-After has passed);
* the pace: a GCRA token bucket at ``requests_per_period * headroom / period`` per second, with a
  burst of ``concurrency`` requests;
* the window: fewer than ``requests_per_period * headroom`` requests (minus what others are seen to
  use, below) were sent on this token in the last ``period`` seconds, by any process;
* fewer than ``concurrency`` of this process's requests are in flight.

``observe()`` learns from each response. ``Ratelimit-Policy`` lowers the quota when the server's is
smaller than the configured one. ``Ratelimit: "default";r=<remaining>;t=<reset>`` is compared with
what should remain given our own recent requests: when fewer remain, someone else is using the token
(the dashboard, another host) and the window and the pace shrink by that much.

The shared state lives in a small SQLite file (default ``~/.cache/aigw-feedback/budget.sqlite``),
keyed by a hash of the base URL and the token, never the token itself. Clock and sleep are injected:
tests prove the pacing without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import BudgetConfig
from pipeline.errors import BudgetExhausted
from pipeline.gateway.retry import retry_after

MAX_PAUSE_SECONDS = 7200.0

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

_RATELIMIT = re.compile(r"\br\s*=\s*(\d+).*?\bt\s*=\s*(\d+(?:\.\d+)?)")
_POLICY = re.compile(r"\bq\s*=\s*(\d+).*?\bw\s*=\s*(\d+(?:\.\d+)?)")


def default_state_path() -> Path:
    """Where processes on this machine meet to share a token's budget."""
    return Path("~/.cache/aigw-feedback/budget.sqlite").expanduser()


def budget_key(base_url: str, token: str) -> str:
    """The shared-state key: one budget per (API, token). A hash, so the file never holds the token."""
    digest = hashlib.sha256(f"aigw-feedback budget\n{base_url}\n{token}".encode())
    return digest.hexdigest()[:32]


@dataclass
class BudgetStats:
    """What the budget did, for the report's requests{total, budget_per_s, utilisation}."""

    requests: int = 0  # slots granted to this process
    waits: int = 0  # slots that had to wait
    waited_seconds: float = 0.0  # all waiting, pauses included
    paused_seconds: float = 0.0  # waiting because of a 429
    rate_limited: int = 0  # 429s observed
    slowdowns: int = 0  # responses showing someone else is using the token
    first_at: float | None = None
    last_at: float | None = None


class Budget:
    """The shared request budget (implements the client's RequestBudget protocol)."""

    def __init__(
        self,
        config: BudgetConfig,
        *,
        key: str,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        state_path: Path | None = None,
    ) -> None:
        self.config = config
        self.key = key
        self.clock = clock
        self.sleep = sleep
        self.stats = BudgetStats()
        self.started_at = clock()
        self._quota = float(config.requests_per_period)
        self._period = float(config.period_seconds)
        self._in_flight = 0
        self._waiters: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._db = _SharedState(state_path or config.shared_state or default_state_path(), key)
        self._stop_reason: str | None = None
        self._stopping: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"Budget(rate={self.rate_per_second:.2f}/s, concurrency={self.config.concurrency})"

    # -- the limits ----------------------------------------------------------------------------

    @property
    def rate_per_second(self) -> float:
        """The pace when nobody else uses the token (the server's policy wins if it is lower)."""
        return self.window_cap / self._period

    @property
    def window_cap(self) -> float:
        return max(1.0, math.floor(self._quota * self.config.headroom))

    def _caps(self, foreign: float) -> tuple[float, float]:
        """(requests allowed per period, pace per second) after what others use of the token."""
        cap = max(1.0, self.window_cap - foreign)
        return cap, cap / self._period

    # -- RequestBudget -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self._enter()
        try:
            yield
        finally:
            await self._leave()

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        now = self.clock()
        policy = _POLICY.search(headers.get("ratelimit-policy", ""))
        if policy:
            quota, period = float(policy.group(1)), float(policy.group(2))
            if period > 0 and quota / period < self._quota / self._period:
                self._quota, self._period = quota, period
        if status == 429:
            self.stats.rate_limited += 1
            self._db.pause_until(now + retry_after(headers))
            return
        limit = _RATELIMIT.search(headers.get("ratelimit", ""))
        if not limit:
            return
        remaining, reset = float(limit.group(1)), float(limit.group(2))
        ours = self._db.sent_since(now - self._period)
        # What would remain if only we used the token. Our requests still in flight may not be
        # counted by the server yet, so the difference never overstates what others use; one
        # request of slack covers our window edge and the server's not lining up exactly.
        expected = self._quota - ours
        foreign = max(0.0, expected - remaining - 1)
        if foreign > 0:
            self.stats.slowdowns += 1
        self._db.set_foreign(foreign, now)
        if remaining <= 0 and reset > 0:
            # Nothing left whatever the reason: the next request would be a 429. Let it roll on.
            self._db.pause_until(now + reset)

    def stop(self, reason: str) -> None:
        """Admit no request from now on (SIGTERM, Ctrl-C): whoever waits for a slot, or asks for
        one later, gets BudgetExhausted(reason) at once. Requests already sent finish normally."""
        self._stop_reason = reason
        if self._stopping is not None:
            self._stopping.set()

    def close(self) -> None:
        self._db.close()

    # -- reporting -----------------------------------------------------------------------------

    def report(self, elapsed: float | None = None) -> dict[str, Any]:
        """requests{total, budget_per_s, utilisation} for this process.

        Utilisation is the share of the budget used over `elapsed` seconds (default: since this
        budget was made): 1.0 means a request every 1/budget_per_s seconds the whole time.
        """
        s = self.stats
        if elapsed is None:
            elapsed = self.clock() - self.started_at
        utilisation = s.requests / (elapsed * self.rate_per_second) if elapsed > 0 else None
        return {
            "total": s.requests,
            "budget_per_s": round(self.rate_per_second, 4),
            "utilisation": round(utilisation, 4) if utilisation is not None else None,
            "waits": s.waits,
            "waited_seconds": round(s.waited_seconds, 3),
            "paused_seconds": round(s.paused_seconds, 3),
            "rate_limited": s.rate_limited,
        }

    # -- internals -----------------------------------------------------------------------------

    def _condition(self) -> asyncio.Condition:
        loop = asyncio.get_running_loop()
        if self._waiters is None or self._loop is not loop:
            self._waiters, self._loop, self._in_flight = asyncio.Condition(), loop, 0
        return self._waiters

    async def _enter(self) -> None:
        cond = self._condition()
        async with cond:
            await cond.wait_for(lambda: self._in_flight < self.config.concurrency)
            self._in_flight += 1
        try:
            waited = False
            while True:
                now = self.clock()
                self._check_caps(now, 0.0)
                wait, paused = self._db.try_acquire(
                    now, self._period, self._caps, burst=self.config.concurrency
                )
                if wait <= 0:
                    break
                self._check_caps(now, wait)
                waited = True
                self.stats.waited_seconds += wait
                if paused:
                    self.stats.paused_seconds += wait
                await self._sleep_unless_stopped(wait)
            self.stats.waits += waited
            self.stats.requests += 1
            if self.stats.first_at is None:
                self.stats.first_at = now
            self.stats.last_at = now
        except BaseException:
            await self._leave()
            raise

    async def _leave(self) -> None:
        cond = self._condition()
        async with cond:
            self._in_flight -= 1
            cond.notify()

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        """Sleep, but wake at once when stop() is called (a 429 pause can last minutes)."""
        if self._stopping is None:
            self._stopping = asyncio.Event()
            if self._stop_reason is not None:
                self._stopping.set()
        nap = asyncio.ensure_future(self.sleep(seconds))
        woken = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({nap, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (nap, woken):
                task.cancel()

    def _check_caps(self, now: float, wait: float) -> None:
        if self._stop_reason is not None:
            raise BudgetExhausted(self._stop_reason)
        cfg = self.config
        if cfg.max_requests is not None and self.stats.requests >= cfg.max_requests:
            raise BudgetExhausted(
                f"the run's request cap ({cfg.max_requests} requests) is used up; "
                "run again to continue, or raise budget.max_requests / --max-requests"
            )
        if cfg.max_duration_seconds is not None:
            deadline = self.started_at + cfg.max_duration_seconds
            if now + wait > deadline:
                raise BudgetExhausted(
                    f"the run's time cap ({cfg.max_duration_seconds:.0f} s) is reached"
                    + (f" (the next request could only go in {wait:.0f} s)" if wait else "")
                    + "; run again to continue, or raise budget.max_duration / --max-duration"
                )


class _SharedState:
    """The token's budget state in SQLite: recent send times, the GCRA clock, pauses, others' use."""

    def __init__(self, path: Path, key: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.key = key
        self.conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA busy_timeout=30000")
        self.conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS budget_sends (key TEXT NOT NULL, t REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS budget_sends_key_t ON budget_sends (key, t);
            CREATE TABLE IF NOT EXISTS budget_state (
                key TEXT PRIMARY KEY, tat REAL NOT NULL DEFAULT 0,
                paused_until REAL NOT NULL DEFAULT 0,
                foreign_use REAL NOT NULL DEFAULT 0, foreign_at REAL NOT NULL DEFAULT 0
            );
            """
        )
        self.conn.execute("INSERT OR IGNORE INTO budget_state (key) VALUES (?)", (key,))

    def try_acquire(
        self,
        now: float,
        period: float,
        caps: Callable[[float], tuple[float, float]],
        *,
        burst: int,
    ) -> tuple[float, bool]:
        """Take a slot now and return (0, False), or return (seconds to wait > 0, is a 429 pause)."""
        with self._transaction() as cur:
            tat, paused_until, foreign, foreign_at = cur.execute(
                "SELECT tat, paused_until, foreign_use, foreign_at FROM budget_state WHERE key = ?",
                (self.key,),
            ).fetchone()
            # State from a clock that disagrees with ours (a test's fake clock, a clock set back)
            # cannot be honoured: a pace slot or a pause that far ahead never comes from us.
            if tat > now + period:
                tat = now
            if paused_until > now + MAX_PAUSE_SECONDS:
                paused_until = 0.0
            if paused_until > now:
                return max(paused_until - now, 1e-6), True
            if not 0 <= now - foreign_at <= period:
                foreign = 0.0  # an old sighting: those requests have left the window
            cap, rate = caps(foreign)
            cur.execute(
                "DELETE FROM budget_sends WHERE key = ? AND (t <= ? OR t > ?)",
                (self.key, now - period, now + 1.0),
            )
            sent, oldest = cur.execute(
                "SELECT count(*), min(t) FROM budget_sends WHERE key = ? AND t > ?",
                (self.key, now - period),
            ).fetchone()
            if sent >= cap:
                # Wait for enough of the window's requests to age out.
                nth = cur.execute(
                    "SELECT t FROM budget_sends WHERE key = ? AND t > ? ORDER BY t LIMIT 1 OFFSET ?",
                    (self.key, now - period, int(sent - cap)),
                ).fetchone()
                return max((nth[0] if nth else oldest) + period - now, 1e-3), False
            interval = 1.0 / rate
            tolerance = interval * max(0, burst - 1)
            tat = max(tat, now)
            if tat - now > tolerance:
                # Never 0: with epoch-sized floats the difference can round away entirely.
                return max((tat - now) - tolerance, 1e-6), False
            cur.execute("UPDATE budget_state SET tat = ? WHERE key = ?", (tat + interval, self.key))
            cur.execute("INSERT INTO budget_sends (key, t) VALUES (?, ?)", (self.key, now))
            return 0.0, False

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

    def sent_since(self, since: float) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM budget_sends WHERE key = ? AND t > ?", (self.key, since)
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
