"""The request budget: one pace for every request a job makes, shared by every process on one token.

Cloudflare allows 1200 requests per 5 minutes per token and blocks the token for 5 minutes when that
is exceeded, so a 429 costs far more than waiting. Two limits apply: the job's own
(``requests_per_period`` per ``period``) and the server's policy (``q`` requests per ``w`` seconds,
from ``Ratelimit-Policy``; until one is seen the job's own is taken for it). Each is a rate and a
window. Before each request ``slot()`` waits until all of these hold:

* no 429 pause is running (a 429 pauses every worker of every process until Retry-After has passed);
* the pace: a GCRA token bucket at the lower of ``requests_per_period * headroom / period`` and
  ``q * headroom / w`` per second, minus what others are seen to use (below), and never faster
  than each window can carry (its cap per window plus the recent round trip, so the sends stay
  evenly spaced instead of filling the window and stopping), with a burst of ``concurrency``
  requests;
* the windows: fewer than ``requests_per_period * headroom`` requests in the last ``period``
  seconds, and fewer than ``min(q - 1, q * headroom)`` (minus what others use) in the last ``w``
  seconds, by any process on this token. A request stays in a window until ``w`` seconds after its
  answer came back (the server may have counted it as late as that), so the budget knows exactly
  when each slot frees, and waits for just that; one request of the server's quota is kept as a
  safety (and ``concurrency`` more while others are seen using the bucket, for what they have in
  flight), so even at headroom 1.0 no request should be refused; while others are seen, a host takes
  at most half the window, so one that joins late gets a share;
* at most 200 requests leave this machine in any second, whatever the token (Cloudflare's per-IP
  limit);
* fewer than ``concurrency`` of this process's requests are in flight, and only one until the first
  answer has shown how full the server's window is (another host may be keeping it full: a burst
  into it would be refused, and a refusal blocks the token for minutes).

``observe()`` learns from each response (its headers read by ``pipeline.gateway.limits``).
``Ratelimit-Policy: "<name>";q=<quota>;w=<window>`` (any policy name; the older
``x-ratelimit-limit`` when it is absent) sets the server's policy. ``Ratelimit:
"<name>";r=<remaining>;t=<reset>`` (or ``x-ratelimit-remaining``/``-reset``) is compared with what
should remain given our own requests that the server may still count: when fewer remain, someone
else is using the token (the dashboard, another host) and the window and the pace shrink by that
much for one window. ``r=0`` alone pauses nothing when our own requests explain it (our windows
already hold the next request until our oldest one ages out); only when others fill the server's
window too does the budget pause for the server's (whole-second, rounded up) reset ``t``.

The shared state (``pipeline.gateway.budget_state``) lives in a small SQLite file (default
``~/.cache/aigw-feedback/budget.sqlite``), keyed by a hash of the base URL and the bucket: the
token's own (a hash of the token, never the token itself), or the one ``[budget] bucket`` names, so
jobs under several tokens of one user share one budget. Keep the file on a local disk; several
hosts on one bucket need no shared file, as the ``Ratelimit`` comparison above sees each host's use
from the others. Clock and sleep are injected: tests prove the pacing without sleeping.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import hashlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import BudgetConfig
from pipeline.errors import BudgetExhausted
from pipeline.gateway.budget_state import (
    MAX_FLIGHT_SECONDS,
    Limits,
    SharedState,
    default_state_path,
)
from pipeline.gateway.limits import Policy, read_limits
from pipeline.gateway.retry import retry_after

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# When this task's current request was granted: the server counted it no earlier than that.
_SENT_AT: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "budget_sent_at", default=None
)


def budget_key(base_url: str, token: str, bucket: str | None = None) -> str:
    """The shared-state key: one budget per (API, bucket), the bucket being the token's own unless
    ``[budget] bucket`` names one. A hash, so the file never holds the token."""
    who = token if bucket is None else f"bucket\n{bucket}"
    digest = hashlib.sha256(f"aigw-feedback budget\n{base_url}\n{who}".encode())
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
        self._own = Policy(float(config.requests_per_period), float(config.period_seconds))
        self._server: Policy | None = None
        self._round_trips: collections.deque[float] = collections.deque(maxlen=32)
        self._in_flight = 0
        self._answered = False
        self._waiters: asyncio.Condition | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._db = SharedState(state_path or config.shared_state or default_state_path(), key)
        self._stop_reason: str | None = None
        self._stopping: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"Budget(rate={self.rate_per_second:.2f}/s, concurrency={self.config.concurrency})"

    # -- the limits ----------------------------------------------------------------------------

    @property
    def policy(self) -> Policy:
        """The server's limit: its Ratelimit-Policy once seen, until then the job's own."""
        return self._server or self._own

    @property
    def rate_per_second(self) -> float:
        """The pace when nobody else uses the token: the lower of the job's and the server's."""
        return self._limits(0.0, 0.0).rate

    def _paced(self, foreign: float) -> Limits:
        return self._limits(foreign, max(self._round_trips, default=0.0))

    def _limits(self, foreign: float, round_trip: float) -> Limits:
        """The windows and the pace after what others are seen to use of the server's window.

        A request holds its slot from when it is sent until a window after its answer, so a window
        carries at most ``cap`` requests per ``window + round_trip`` seconds; pacing at that (not
        faster, then stopping when the window is full) keeps the sends evenly spaced.
        """
        headroom = self.config.headroom
        own, server = self._own, self.policy
        own_cap = max(1.0, math.floor(own.quota * headroom))
        # One request of the server's quota is a safety: our view of the window is only exact to
        # within one. When others are seen using the bucket (another host, the dashboard), what
        # they have in flight and send before their next sighting is unknown: as many requests
        # as our own concurrency more are kept free.
        safety = 1 + (self.config.concurrency if foreign > 0 else 0)
        ceiling = min(server.quota - safety, math.floor(server.quota * headroom))
        server_cap = max(1.0, ceiling - foreign)
        if foreign > 0:
            # Sharing: take at most half, so a host that joins a window another keeps full gets a
            # share of it, not the one slot left (three hosts still get about a fifth each).
            server_cap = min(server_cap, max(1.0, math.floor(ceiling / 2)))
        server_rate = min(
            max(1.0, server.quota * headroom - foreign) / server.window,
            server_cap / (server.window + round_trip),
        )
        own_rate = min(own.quota * headroom / own.window, own_cap / (own.window + round_trip))
        return Limits(
            ((own.window, own_cap), (server.window, server_cap)), min(own_rate, server_rate)
        )

    # -- RequestBudget -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        row = await self._enter()
        try:
            yield
        finally:
            await self._leave(row)

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        now = self.clock()
        seen = read_limits(headers, now=now, default_window=self._own.window)
        if seen.policy is not None:
            self._server = seen.policy
        if status == 429:
            self.stats.rate_limited += 1
            self._db.pause_until(now + retry_after(headers))
            return
        if seen.remaining is None:
            return
        remaining, reset = seen.remaining, seen.reset or 0.0
        limit = self.policy
        # Our requests the server may still count: it counted this answer's request no earlier than
        # we sent it, and each of ours no later than its answer came back.
        sent_at = _SENT_AT.get()
        since = (now if sent_at is None or sent_at > now else sent_at) - limit.window
        ours = self._db.counted_since(since, now)
        # What would remain if only we used the token. Ours in flight may not be counted by the
        # server yet, so the difference never overstates what others use; one request of slack
        # covers the server's window and ours not lining up exactly.
        foreign = max(0.0, limit.quota - ours - remaining - 1)
        if foreign > 0:
            self.stats.slowdowns += 1
        self._db.set_foreign(foreign, now)
        if remaining <= 0 and reset > 0 and foreign > 0:
            # Others fill the server's window too: only its reset says when a slot frees. (When our
            # own requests explain r=0, our windows already wait for exactly the oldest of them.)
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

    async def _enter(self) -> int:
        cond = self._condition()
        async with cond:
            await cond.wait_for(lambda: self._in_flight < self._concurrency())
            self._in_flight += 1
        try:
            waited = False
            while True:
                now = self.clock()
                self._check_caps(now, 0.0)
                wait, paused, row = self._db.try_acquire(
                    now,
                    self._paced,
                    foreign_for=self.policy.window,
                    burst=self.config.concurrency,
                )
                if wait <= 0:
                    break
                self._check_caps(now, wait)
                waited = True
                self.stats.waited_seconds += wait
                if paused:
                    self.stats.paused_seconds += wait
                await self._sleep_unless_stopped(wait)
            _SENT_AT.set(now)
            self.stats.waits += waited
            self.stats.requests += 1
            if self.stats.first_at is None:
                self.stats.first_at = now
            self.stats.last_at = now
            return row
        except BaseException:
            await self._leave(None)
            raise

    def _concurrency(self) -> int:
        # The first request goes alone: until its answer says how full the server's window is
        # (another host may be keeping it full), a burst could be refused, and a refusal blocks
        # the token for minutes.
        return self.config.concurrency if self._answered else 1

    async def _leave(self, row: int | None) -> None:
        if row is not None:
            self._answered = True
            answered = self.clock()
            self._db.answered(row, answered)
            sent_at = _SENT_AT.get()
            if sent_at is not None and 0 <= answered - sent_at <= MAX_FLIGHT_SECONDS:
                self._round_trips.append(answered - sent_at)
        cond = self._condition()
        async with cond:
            self._in_flight -= 1
            cond.notify_all()

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
