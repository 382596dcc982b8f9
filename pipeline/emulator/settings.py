"""Settings of the local AI Gateway Logs API emulator: tokens, rate limit and faults.

One frozen dataclass, so a running emulator's behaviour is a value that tests can build, compare and
replace at runtime (``POST /__emulator/config``) without any hidden mutable switches.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pipeline.emulator.seed import ID_FORMATS, IdFormat

Scope = Literal["read", "edit"]
_POLICY_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")

DEFAULT_ACCOUNT_ID = "0123456789abcdef0123456789abcdef"
DEFAULT_GATEWAY_ID = "demo-gateway"
DEFAULT_EDIT_TOKEN = "demo-edit-token"
DEFAULT_READ_TOKEN = "demo-read-token"


def _default_tokens() -> dict[str, str]:
    return {DEFAULT_EDIT_TOKEN: "edit", DEFAULT_READ_TOKEN: "read"}


@dataclass(frozen=True)
class EmulatorSettings:
    """How the emulator behaves. Every fault is off by default; the rate limit is Cloudflare's.

    ``tokens`` maps a bearer token to its scope, ``"read"`` (AI Gateway Read) or ``"edit"``
    (AI Gateway Edit, needed for PATCH and DELETE). ``block_seconds`` defaults to the window, as on
    Cloudflare (going over blocks every call for five minutes). Rates are probabilities per request.
    ``drop_rate`` drops the connection before the request has any effect; ``drop_after_write_rate``
    drops it after a PATCH or DELETE was applied, so the client cannot know that it landed.
    The churn settings insert and delete that many logs of the listed gateway on every list request.
    ``seed`` makes the faults reproducible: the same seed and the same request sequence give the
    same faults.

    Cloudflare since mid-2026 (all optional, off or as before unless Cloudflare does otherwise):
    ``log_ids`` is the id format of logs the emulator creates itself (churn): ``"cloudflare"``
    gives UUIDv7 ids to logs from 2026-10-08 and ULIDs before (see ``seed.IdFormat``).
    ``account_limit_requests`` > 0 turns on a second, per-account limiter: over
    ``account_limit_requests`` in ``account_limit_window`` seconds it answers 429 code 10040 with
    ``Retry-After: account_limit_retry_after`` while ``Ratelimit`` still shows what the per-token
    limit has left. ``ip_limit_per_second`` > 0 limits each client IP (Cloudflare: 200/s; off by
    default, since in-process tests with a frozen clock easily send more) with 429 code 1015.
    ``legacy_ratelimit_headers`` adds ``x-ratelimit-limit/-remaining/-reset``;
    ``ratelimit_policy_name`` names the policy in ``Ratelimit`` and ``Ratelimit-Policy``
    (``"default"``, ``"burst"``). ``list_feedback`` false leaves ``feedback`` and ``score`` out of
    list entries (the schema does not promise them). ``delete_without_filters`` true lets a DELETE
    without filters delete up to ``limit`` logs, as the OpenAPI extract allows; by default it is
    refused with 400, so a stray call cannot wipe a gateway.
    """

    tokens: Mapping[str, str] = field(default_factory=_default_tokens)
    rate_limit_requests: int = 1200
    rate_limit_window: float = 300.0
    block_seconds: float | None = None
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    drop_after_write_rate: float = 0.0
    write_lag_seconds: float = 0.0
    churn_insert_per_list: int = 0
    churn_delete_per_list: int = 0
    seed: int = 0
    # Set through ``EmulatorSettings.of(...)``, ``updated()`` or ``configure()``, not the generated
    # constructor, so existing ``EmulatorSettings(**{...})`` callers keep type-checking.
    log_ids: IdFormat = field(default="cloudflare", init=False)
    account_limit_requests: int = field(default=0, init=False)
    account_limit_window: float = field(default=60.0, init=False)
    account_limit_retry_after: int = field(default=60, init=False)
    ip_limit_per_second: int = field(default=0, init=False)
    legacy_ratelimit_headers: bool = field(default=False, init=False)
    ratelimit_policy_name: str = field(default="default", init=False)
    list_feedback: bool = field(default=True, init=False)
    delete_without_filters: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        for name in ("error_rate", "drop_rate", "drop_after_write_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        for name in (
            "latency_ms",
            "jitter_ms",
            "write_lag_seconds",
            "churn_insert_per_list",
            "churn_delete_per_list",
            "account_limit_requests",
            "account_limit_retry_after",
            "ip_limit_per_second",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)!r}")
        if self.rate_limit_requests < 1:
            raise ValueError("rate_limit_requests must be at least 1")
        if not self.rate_limit_window > 0:
            raise ValueError("rate_limit_window must be positive")
        if not self.account_limit_window > 0:
            raise ValueError("account_limit_window must be positive")
        if self.log_ids not in ID_FORMATS:
            raise ValueError(
                f"log_ids must be one of {', '.join(ID_FORMATS)}, got {self.log_ids!r}"
            )
        if not _POLICY_RE.match(self.ratelimit_policy_name):
            raise ValueError(
                "ratelimit_policy_name must be a token of letters, digits, '_' or '-', "
                f"got {self.ratelimit_policy_name!r}"
            )
        if self.block_seconds is not None and self.block_seconds < 0:
            raise ValueError("block_seconds must not be negative")
        for token, scope in self.tokens.items():
            if scope not in ("read", "edit"):
                raise ValueError(f"token scope must be 'read' or 'edit', got {scope!r}")
            if not token or any(ch.isspace() for ch in token):
                raise ValueError("a token must be a non-empty string without spaces")

    @property
    def effective_block_seconds(self) -> float:
        """How long a token stays blocked after going over the limit."""
        return self.rate_limit_window if self.block_seconds is None else self.block_seconds

    def token_with_scope(self, scope: Scope) -> str | None:
        """The first configured token with exactly this scope, if any."""
        return next((t for t, s in self.tokens.items() if s == scope), None)

    def updated(self, changes: Mapping[str, Any]) -> EmulatorSettings:
        """A copy with ``changes`` applied; unknown names or wrong types raise ValueError."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        clean: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in fields:
                raise ValueError(f"unknown setting {name!r}; known: {', '.join(sorted(fields))}")
            clean[name] = _coerce(name, value, getattr(self, name))
        late = {f.name for f in fields.values() if not f.init}
        new = dataclasses.replace(self, **{k: v for k, v in clean.items() if k not in late})
        for name in late:
            object.__setattr__(new, name, clean.get(name, getattr(self, name)))
        new.__post_init__()
        return new

    @classmethod
    def of(cls, **settings: Any) -> EmulatorSettings:
        """Settings from keyword arguments, the options of ``updated`` included (checked alike)."""
        return cls().updated(settings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view; token values are shown, since they are local demo tokens."""
        data = dataclasses.asdict(self)
        data["tokens"] = dict(self.tokens)
        data["effective_block_seconds"] = self.effective_block_seconds
        return data


def _coerce(name: str, value: Any, current: Any) -> Any:
    if name == "tokens":
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ValueError("tokens must be a map of token -> 'read' | 'edit'")
        return dict(value)
    if name == "block_seconds" and value is None:
        return None
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value
    if isinstance(current, str):
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite")
    if isinstance(current, int) and name not in ("block_seconds",):
        if isinstance(current, bool) or value != int(value):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return int(value)
    return float(value)
