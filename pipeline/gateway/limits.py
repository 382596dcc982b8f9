"""The server's rate-limit headers, read into a policy (q requests per w seconds) and what remains.

``Ratelimit-Policy: "<name>";q=<quota>;w=<window>`` (any policy name: Cloudflare sends
``"default"`` or ``"burst"``) and ``Ratelimit: "<name>";r=<remaining>;t=<reset>``, or on older
responses ``x-ratelimit-limit`` / ``-remaining`` / ``-reset`` (seconds, or a Unix time).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

EPOCH_RESET = 1_000_000_000.0  # an x-ratelimit-reset above this is a Unix time, not seconds


@dataclass(frozen=True)
class Policy:
    """A rate limit: at most ``quota`` requests in any ``window`` seconds."""

    quota: float
    window: float


@dataclass(frozen=True)
class ServerLimits:
    """What one response says: the policy (if any), and remaining/reset (if given)."""

    policy: Policy | None
    remaining: float | None
    reset: float | None


def _items(value: str) -> list[tuple[str, dict[str, float]]]:
    """Structured-field list items: ``"name";k=v;k=v, "other";k=v`` -> [(name, {k: v})]."""
    out: list[tuple[str, dict[str, float]]] = []
    for part in value.split(","):
        fields = [f.strip() for f in part.split(";") if f.strip()]
        if not fields:
            continue
        name = ""
        if "=" not in fields[0]:
            name = fields.pop(0).strip('"')
        params: dict[str, float] = {}
        for field in fields:
            key, _, number = field.partition("=")
            with contextlib.suppress(ValueError):
                params[key.strip().lower()] = float(number.strip().strip('"'))
        out.append((name, params))
    return out


def _first_number(value: str | None) -> float | None:
    if not value:
        return None
    head = value.split(",")[0].split(";")[0].strip()
    try:
        return float(head)
    except ValueError:
        return None


def read_limits(headers: Mapping[str, str], *, now: float, default_window: float) -> ServerLimits:
    """The server's rate-limit headers, whatever the policy is called, old headers included.

    ``Ratelimit``/``Ratelimit-Policy`` win; without them ``x-ratelimit-limit`` (a quota, with
    ``w=`` if given, else the job's own period), ``x-ratelimit-remaining`` and ``x-ratelimit-reset``
    (seconds, or a Unix time) are read.
    """
    policy: Policy | None = None
    policies = [
        (name, p)
        for name, p in _items(headers.get("ratelimit-policy", ""))
        if "q" in p and "w" in p
    ]
    states = [(name, p) for name, p in _items(headers.get("ratelimit", "")) if "r" in p]
    state = states[0] if states else None
    if policies:
        # The policy the Ratelimit item names, else the tightest one given.
        named = [p for name, p in policies if state is not None and name == state[0]]
        chosen = named[0] if named else min((p for _, p in policies), key=lambda p: p["q"] / p["w"])
        if chosen["w"] > 0 and chosen["q"] > 0:
            policy = Policy(chosen["q"], chosen["w"])
    remaining = reset = None
    if state is not None:
        remaining, reset = state[1]["r"], state[1].get("t")
    if policy is None:
        limit = _first_number(headers.get("x-ratelimit-limit"))
        if limit is not None and limit > 0:
            extra = _items(headers.get("x-ratelimit-limit", ""))
            window = next((p["w"] for _, p in extra if p.get("w", 0) > 0), default_window)
            policy = Policy(limit, window)
    if state is None:
        remaining = _first_number(headers.get("x-ratelimit-remaining"))
        reset = _first_number(headers.get("x-ratelimit-reset"))
        if reset is not None and reset > EPOCH_RESET:
            reset = max(0.0, reset - now)
    return ServerLimits(policy, remaining, reset)
