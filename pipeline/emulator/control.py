"""The running emulator's mutable state: current settings, rate limiter, faults, pending writes and
the statistics that tests and the admin routes read.

One object, reachable as ``app.state.control`` and through ``/__emulator/...``, so that a test can
turn faults on mid-way, read how many requests were made, or prove that no log was PATCHed twice —
without reaching into private attributes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.emulator.faults import FaultInjector, PendingWrites
from pipeline.emulator.ratelimit import SlidingWindowLimiter
from pipeline.emulator.settings import DEFAULT_ACCOUNT_ID, DEFAULT_GATEWAY_ID, EmulatorSettings
from pipeline.emulator.store import EmulatorStore


class Stats:
    """Counters since start or the last reset."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        self.in_flight = 0
        self.peak_concurrency = 0
        self.patches: Counter[str] = Counter()
        self.churn_inserted: list[str] = []
        self.churn_deleted: list[str] = []
        self.injected_errors = 0
        self.dropped = 0
        self.writes_delayed = 0

    def started(self) -> None:
        self.in_flight += 1
        if self.in_flight > self.peak_concurrency:
            self.peak_concurrency = self.in_flight

    def finished(self, route: str, status: str) -> None:
        self.in_flight -= 1
        self.requests[(route, status)] += 1

    def snapshot(self, rate_limited: int, pending_writes: int) -> dict[str, Any]:
        by_route: dict[str, dict[str, int]] = {}
        for (route, status), count in sorted(self.requests.items()):
            by_route.setdefault(route, {})[status] = count
        return {
            "requests": by_route,
            "total_requests": sum(self.requests.values()),
            "rate_limited": rate_limited,
            "peak_concurrency": self.peak_concurrency,
            "in_flight": self.in_flight,
            "patches": {"total": sum(self.patches.values()), "distinct_logs": len(self.patches)},
            "churn": {"inserted": len(self.churn_inserted), "deleted": len(self.churn_deleted)},
            "faults": {
                "server_errors": self.injected_errors,
                "dropped": self.dropped,
                "writes_delayed": self.writes_delayed,
            },
            "pending_writes": pending_writes,
        }


class EmulatorControl:
    """Settings and state of one emulator app."""

    def __init__(
        self, settings: EmulatorSettings, store: EmulatorStore, clock: Callable[[], float]
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.limiter = SlidingWindowLimiter(clock)
        self.account_limiter = SlidingWindowLimiter(clock)  # the optional second limiter (10040)
        self.ip_limiter = SlidingWindowLimiter(clock)  # the optional per-IP limit (1015)
        self.faults = FaultInjector(settings.seed)
        self.pending = PendingWrites()
        self.stats = Stats()
        # The gateway that admin routes use when a request names none.
        self.default_account_id = DEFAULT_ACCOUNT_ID
        self.default_gateway_id = DEFAULT_GATEWAY_ID

    def configure(
        self, changes: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> EmulatorSettings:
        """Change settings at runtime (e.g. turn a fault on mid-test); ValueError if invalid."""
        merged = {**(changes or {}), **kwargs}
        new = self.settings.updated(merged)
        if new.seed != self.settings.seed:
            self.faults.reseed(new.seed)
        self.settings = new
        return new

    def reset(self) -> None:
        """Forget statistics and rate-limit state and restart the fault sequence (data stays)."""
        in_flight = self.stats.in_flight
        self.stats = Stats()
        self.stats.in_flight = in_flight
        self.limiter.reset()
        self.account_limiter.reset()
        self.ip_limiter.reset()
        self.faults.reseed(self.settings.seed)

    def apply_due_writes(self) -> None:
        if len(self.pending):
            self.pending.apply_due(self.store, self.clock())

    def snapshot(self) -> dict[str, Any]:
        """The statistics; ``rate_limited`` counts the per-token limit's 429s (code 971) and
        ``rate_limited_by`` every limiter's: ``token``, ``account`` (10040) and ``ip`` (1015)."""
        snap = self.stats.snapshot(self.limiter.rejected, len(self.pending))
        snap["rate_limited_by"] = {
            "token": self.limiter.rejected,
            "account": self.account_limiter.rejected,
            "ip": self.ip_limiter.rejected,
        }
        return snap

    def patches(self) -> dict[str, Any]:
        """PATCH requests accepted per log id: ``{"total": N, "by_log": {id: count}}``."""
        by_log = dict(self.stats.patches)
        return {"total": sum(by_log.values()), "by_log": by_log}

    def churned(self) -> dict[str, list[str]]:
        return {
            "inserted": list(self.stats.churn_inserted),
            "deleted": list(self.stats.churn_deleted),
        }
