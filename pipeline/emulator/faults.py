"""Fault injection: the ways the real API and network misbehave, reproducibly.

* latency and jitter before every answer (the sleep is injected, so tests do not wait);
* a 5xx rate: 500 with a JSON body, or 502/503 with an HTML body as Cloudflare's edge sends;
* dropped connections, before the request has any effect or after a write was applied;
* read-after-write lag: a PATCH is acknowledged now but visible to GET and list only later;
* churn: logs inserted (with a created_at inside the already-listed range) and deleted while a
  client pages.

All randomness comes from ``random.Random(seed)``: the same seed and the same sequence of requests
give the same faults. Churn has its own generator so that turning it on does not change which
requests fail.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from pipeline.emulator.seed import make_log
from pipeline.emulator.settings import EmulatorSettings
from pipeline.emulator.store import EmulatorStore


class DroppedConnection(httpx.RemoteProtocolError):
    """The emulator dropped the connection without answering.

    Over real HTTP the server aborts the socket, which httpx reports as a transport error. Mounted
    in-process (``httpx.ASGITransport``) the app raises this instead; it is an
    ``httpx.RemoteProtocolError`` too, so client code handles both the same way.
    """

    def __init__(self, message: str = "Server disconnected without sending a response.") -> None:
        super().__init__(message)


_HTML_5XX = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
}


@dataclass(frozen=True)
class ServerErrorFault:
    status: int
    content_type: str
    body: bytes


class FaultInjector:
    """Draws the faults of each request from seeded generators."""

    def __init__(self, seed: int) -> None:
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self.churn_rng = random.Random(f"churn-{seed}")

    def delay_seconds(self, settings: EmulatorSettings) -> float:
        delay = settings.latency_ms
        if settings.jitter_ms > 0:
            delay += self._rng.uniform(0.0, settings.jitter_ms)
        return delay / 1000.0

    def server_error(self, settings: EmulatorSettings) -> ServerErrorFault | None:
        if settings.error_rate <= 0 or self._rng.random() >= settings.error_rate:
            return None
        status = self._rng.choice((500, 502, 503))
        if status == 500:
            return ServerErrorFault(
                500,
                "application/json",
                b'{"success":false,"errors":[{"code":10001,"message":"Internal server error"}],'
                b'"messages":[],"result":null}',
            )
        html = _HTML_5XX.format(code=status, reason=_REASONS[status]).encode()
        return ServerErrorFault(status, "text/html", html)

    def drop_before(self, settings: EmulatorSettings) -> bool:
        return settings.drop_rate > 0 and self._rng.random() < settings.drop_rate

    def drop_after_write(self, settings: EmulatorSettings) -> bool:
        rate = settings.drop_after_write_rate
        return rate > 0 and self._rng.random() < rate


@dataclass(order=True)
class _Pending:
    visible_at: float
    seq: int
    gw: int = field(compare=False)
    log_id: str = field(compare=False)
    changes: Mapping[str, Any] = field(compare=False)


class PendingWrites:
    """PATCHes acknowledged but not yet visible (read-after-write lag), applied in order."""

    def __init__(self) -> None:
        self._heap: list[_Pending] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, visible_at: float, gw: int, log_id: str, changes: Mapping[str, Any]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, _Pending(visible_at, self._seq, gw, log_id, changes))

    def apply_due(self, store: EmulatorStore, now: float) -> int:
        """Make every write whose time has come visible; returns how many."""
        applied = 0
        while self._heap and self._heap[0].visible_at <= now:
            item = heapq.heappop(self._heap)
            store.gw_patch(item.gw, item.log_id, item.changes)
            applied += 1
        return applied

    def clear(self) -> None:
        self._heap.clear()


def churn(
    store: EmulatorStore, gw: int, settings: EmulatorSettings, rng: random.Random
) -> tuple[list[str], list[str]]:
    """Delete and insert logs of gateway ``gw`` as configured; returns (inserted, deleted) ids.

    Deletions come first, so the inserted logs — dated between the oldest and newest stored log,
    i.e. inside a range a client may already have paged past — stay to be found (or missed).
    """
    deleted: list[str] = []
    inserted: list[str] = []
    bounds = store.gw_bounds(gw)
    if settings.churn_delete_per_list and bounds is not None:
        deleted = store.gw_random_ids(gw, settings.churn_delete_per_list, rng)
        store.gw_delete_ids(gw, deleted)
    if settings.churn_insert_per_list and bounds is not None:
        low, high = bounds
        logs = [
            make_log(rng, rng.randint(low, high), settings.log_ids)
            for _ in range(settings.churn_insert_per_list)
        ]
        store.gw_insert(gw, logs)
        inserted = [log["id"] for log in logs]
    return inserted, deleted
