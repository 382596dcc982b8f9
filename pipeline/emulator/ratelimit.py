"""Cloudflare's per-token rate limit: a sliding window, and a block after going over.

Each token may make ``quota`` requests in any ``window`` seconds. The request that goes over gets a
429 and blocks the token for ``block_seconds``: every call in that time is refused (and does not
count), as the Cloudflare docs describe. Every answer carries the standard headers
``Ratelimit: "default";r=<remaining>;t=<seconds>`` and
``Ratelimit-Policy: "default";q=<quota>;w=<window>``; a 429 adds ``Retry-After`` in whole seconds.

The clock is injected, so tests move time instead of sleeping.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    reset_seconds: int
    retry_after: int  # whole seconds; 0 when allowed


class SlidingWindowLimiter:
    """Per-key sliding-window log. Not thread-safe: the ASGI app calls it from one event loop."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}
        self.rejected = 0

    def reset(self) -> None:
        self._hits.clear()
        self._blocked_until.clear()
        self.rejected = 0

    def hit(self, key: str, quota: int, window: float, block_seconds: float) -> Decision:
        """Count one request for ``key`` (unless refused) and say whether it may proceed."""
        now = self._clock()
        blocked_until = self._blocked_until.get(key)
        if blocked_until is not None:
            if now < blocked_until:
                self.rejected += 1
                wait = _whole(blocked_until - now)
                return Decision(False, 0, wait, wait)
            del self._blocked_until[key]
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
        horizon = now - window
        while hits and hits[0] <= horizon:
            hits.popleft()
        if len(hits) >= quota:
            self.rejected += 1
            if block_seconds > 0:
                # Going over blocks the token; the window starts afresh after the block.
                hits.clear()
                self._blocked_until[key] = now + block_seconds
                wait = _whole(block_seconds)
            else:
                wait = _whole(hits[0] + window - now)
            return Decision(False, 0, wait, wait)
        hits.append(now)
        return Decision(True, quota - len(hits), _whole(hits[0] + window - now), 0)


def _whole(seconds: float) -> int:
    return max(1, math.ceil(seconds - 1e-9))


def headers(
    decision: Decision,
    quota: int,
    window: float,
    *,
    policy: str = "default",
    legacy: bool = False,
) -> dict[str, str]:
    """The rate-limit headers for one answer.

    ``policy`` is the name in both headers (Cloudflare's vary: ``"default"``, ``"burst"``);
    ``legacy`` adds the older ``x-ratelimit-limit``, ``-remaining`` and ``-reset`` (seconds).
    """
    out = {
        "ratelimit": f'"{policy}";r={decision.remaining};t={decision.reset_seconds}',
        "ratelimit-policy": f'"{policy}";q={quota};w={_window_text(window)}',
    }
    if legacy:
        out["x-ratelimit-limit"] = str(quota)
        out["x-ratelimit-remaining"] = str(decision.remaining)
        out["x-ratelimit-reset"] = str(decision.reset_seconds)
    if not decision.allowed:
        out["retry-after"] = str(decision.retry_after)
    return out


def _window_text(window: float) -> str:
    return str(int(window)) if float(window).is_integer() else f"{window:g}"
