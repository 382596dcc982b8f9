"""The Logs API client: async httpx, bearer auth, Cloudflare's envelope, one typed error per failure.

Every request goes through the shared request budget (pacing, in-flight bound, 429 pauses) and the
retry policy. `filters` always travels as ONE JSON-encoded query parameter: the dotted form the official
SDKs send is silently ignored by the API, which then returns unfiltered results.

The token is only ever placed in the Authorization header. It never appears in a repr, a log line or an
exception message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

import httpx

from pipeline.config import GatewayConfig
from pipeline.errors import (
    ApiError,
    AuthError,
    BadRequestError,
    BudgetExhausted,
    GatewayNotFoundError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from pipeline.gateway.retry import RetryPolicy, retry_after

log = logging.getLogger(__name__)

PERMISSION_HINT = "the token needs AI Gateway Read, and AI Gateway Edit to write feedback"
GLOBAL_LIMIT_CODE = 971  # Cloudflare's 429 code for the global limit; others are other limiters
LogEntry = dict[str, Any]


class RequestBudget(Protocol):
    """What the client needs from the budget (implemented in pipeline.gateway.budget)."""

    def slot(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Wait until one more request may be sent (rate, in-flight bound, pauses after a 429).
        Raises BudgetExhausted when the run's request or time cap is used up."""
        ...

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Learn from a response: Ratelimit headers, and a 429's Retry-After (pause everyone)."""
        ...

    def report(self, elapsed: float | None = None) -> dict[str, Any]:
        """requests{total, budget_per_s, utilisation} for the report."""
        ...

    def stop(self, reason: str) -> None:
        """Admit no more requests: the next slot() raises BudgetExhausted(reason)."""
        ...


class NoBudget:
    """No pacing at all: for tests of the client itself and for the emulator's own tools."""

    def __init__(self) -> None:
        self._stop_reason: str | None = None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._stop_reason is not None:
            raise BudgetExhausted(self._stop_reason)
        yield

    def stop(self, reason: str) -> None:
        self._stop_reason = reason

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        return None

    def report(self, elapsed: float | None = None) -> dict[str, Any]:
        return {"total": None, "budget_per_s": None, "utilisation": None}


@dataclass(frozen=True)
class LogPage:
    entries: list[LogEntry]
    page: int
    per_page: int
    count: int
    total_count: int
    info: dict[str, Any]


@dataclass
class ClientStats:
    """What the client did, for stage results and the report."""

    requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    # The rate-limit headers of the latest answer (Ratelimit, Ratelimit-Policy, x-ratelimit-*),
    # for `aigw-feedback check` to say what the bucket holds.
    limit_headers: dict[str, str] = field(default_factory=dict)
    # 429s by the error code of the limiter that answered ("971": the global limit).
    rate_limited_by: Counter[str] = field(default_factory=Counter)
    # Requests sent per wall-clock second (epoch second -> count), for each stage's chart.
    per_second: Counter[int] = field(default_factory=Counter)

    def timeline_since(self, before: Counter[int]) -> list[list[int]]:
        """[second, requests] sent since ``before`` (a copy of ``per_second`` taken earlier)."""
        return [[sec, n] for sec, n in sorted((self.per_second - before).items())]


def bearer_header(gateway: GatewayConfig) -> str:
    """The Authorization header's value. AuthError (exit 3) for a token that cannot be one.

    A header value is visible ASCII; a token copied with a stray character (a non-breaking space,
    a smart quote, a tab) would otherwise fail deep in the HTTP library, with an error naming the
    header, or be sent mangled. The message says what is wrong, never the token.
    """
    token = gateway.require_token().reveal()
    if not token.isascii():
        problem = "a character that is not ASCII"
    elif not all("!" <= c <= "~" for c in token):
        problem = "a space or a control character"
    else:
        return f"Bearer {token}"
    source = gateway.token_env + (f" or {gateway.token_file}" if gateway.token_file else "")
    raise AuthError(
        f"the API token (from {source}) cannot be sent in an HTTP header: it contains {problem}. "
        "Copy it again from the Cloudflare dashboard (My Profile > API Tokens), with nothing "
        "around it."
    )


def encode_filters(filters: Sequence[Mapping[str, Any]]) -> str:
    """The wire form: one JSON array, e.g. [{"key":"id","operator":"eq","value":["a","b"]}]."""
    return json.dumps(list(filters), separators=(",", ":"))


class LogsClient:
    """One gateway's Logs API. Use as `async with LogsClient(gateway, token=...) as client:`."""

    def __init__(
        self,
        gateway: GatewayConfig,
        *,
        budget: RequestBudget | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        max_connections: int = 16,
    ) -> None:
        authorization = bearer_header(gateway)
        self.gateway = gateway
        self.budget: RequestBudget = budget or NoBudget()
        self.retry = retry or RetryPolicy()
        self.stats = ClientStats()
        self._http = httpx.AsyncClient(
            # Paths are joined below: httpx would add a trailing slash to a base URL ending in /logs,
            # and the API has no route for ".../logs/".
            base_url=gateway.base_url,
            headers={"Authorization": authorization},
            transport=transport,
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections),
        )

    def __repr__(self) -> str:
        return (
            f"LogsClient(base_url={self.gateway.base_url!r}, gateway={self.gateway.gateway_id!r})"
        )

    async def __aenter__(self) -> LogsClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        close = getattr(self.budget, "close", None)
        if callable(close):
            close()

    # -- operations ------------------------------------------------------------------------

    async def list_logs(
        self,
        *,
        filters: Sequence[Mapping[str, Any]] = (),
        page: int = 1,
        per_page: int = 50,
        order_by: str = "created_at",
        direction: str = "asc",
        meta_info: bool = False,
    ) -> LogPage:
        params: dict[str, str | int] = {
            "page": page,
            "per_page": per_page,
            "order_by": order_by,
            "order_by_direction": direction,
        }
        if filters:
            params["filters"] = encode_filters(filters)
        if meta_info:
            params["meta_info"] = "true"
        body = await self._call("GET", "", params=params)
        info = body.get("result_info") or {}
        entries = body.get("result") or []
        return LogPage(
            entries=list(entries),
            page=int(info.get("page", page)),
            per_page=int(info.get("per_page", per_page)),
            count=int(info.get("count", len(entries))),
            total_count=int(info.get("total_count", len(entries))),
            info=dict(info),
        )

    async def get_log(self, log_id: str) -> LogEntry:
        """One log with its extras. Raises NotFoundError for an unknown id."""
        body = await self._call("GET", f"/{_quote(log_id)}")
        result: LogEntry = body.get("result") or {}
        return result

    async def patch_log(self, log_id: str, body: Mapping[str, Any]) -> None:
        """Set feedback / score / metadata on one log. Raises NotFoundError for an unknown id."""
        await self._call("PATCH", f"/{_quote(log_id)}", json=dict(body))

    # -- plumbing --------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
    ) -> dict[str, Any]:
        """One logical request: retried on 5xx/transport errors, re-sent after 429 pauses."""

        async def attempt() -> dict[str, Any]:
            while True:
                try:
                    return await self._send_once(method, path, params=params, json=json)
                except RateLimitedError:
                    # The budget has paused every worker until Retry-After; go again, no attempt used.
                    continue

        def on_retry(_exc: BaseException) -> None:
            self.stats.retries += 1

        return await self.retry.call(attempt, on_retry=on_retry)

    async def _send_once(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None,
        json: Any,
    ) -> dict[str, Any]:
        async with self.budget.slot():
            self.stats.requests += 1
            self.stats.per_second[int(time.time())] += 1
            try:
                response = await self._http.request(
                    method, self.gateway.logs_path + path, params=params, json=json
                )
            except httpx.TransportError as exc:
                raise TransportError(
                    f"{method} {self.gateway.gateway_id} logs{path}: {type(exc).__name__}: {exc}"
                ) from None
            self.stats.by_status[response.status_code] += 1
            self.stats.limit_headers = {
                k: v for k, v in response.headers.items() if "ratelimit" in k.lower()
            }
            self.budget.observe(response.status_code, response.headers)
        return self._parse(method, path, response)

    def _parse(self, method: str, path: str, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        what = f"{method} logs{path}"
        try:
            body = response.json()
        except ValueError:
            body = None
        if 200 <= status < 300 and isinstance(body, dict) and body.get("success", True):
            return body
        errors = body.get("errors") if isinstance(body, dict) else None
        first = (
            errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
        )
        message = str(first.get("message") or response.reason_phrase or "no message")
        code = first.get("code")
        if status == 429:
            self.stats.rate_limited += 1
            self.stats.rate_limited_by[str(code)] += 1
            wait = retry_after(response.headers)
            log.warning(
                "%s: 429 from %s; every request waits %.0f s (its Retry-After) and goes again",
                what,
                limiter_name(code),
                wait,
                extra={"rate_limited_by": str(code), "retry_after": wait},
            )
            raise RateLimitedError(
                f"{what}: rate limited by {limiter_name(code)}; retry after {wait:.0f}s",
                retry_after=wait,
                code=code if isinstance(code, int) else None,
            )
        if status in (401, 403):
            raise AuthError(
                f"{what} was refused: {message} (HTTP {status}, code {code}); {PERMISSION_HINT}"
            )
        if status == 404 and method == "GET" and not path:
            # The collection itself is missing: the account or the gateway does not exist.
            raise GatewayNotFoundError(
                f"gateway {self.gateway.gateway_id!r} was not found in account "
                f"{self.gateway.account_id} (HTTP 404, code {code}); check [gateway] gateway_id "
                "and account_id in the job file"
            )
        if status == 404:
            raise NotFoundError(f"{what}: not found", status=404, code=code)
        if status == 400 and code == 6003:
            raise AuthError(
                f"{what}: the Authorization header was malformed ({message}); check the token"
            )
        if 400 <= status < 500:
            raise BadRequestError(f"{what}: {message} (HTTP {status})", status=status, code=code)
        if status >= 500:
            raise ServerError(f"{what}: server error HTTP {status}", status=status, code=code)
        raise ApiError(f"{what}: unexpected HTTP {status}: {message}", status=status, code=code)


def limiter_name(code: object) -> str:
    """Which Cloudflare limiter a 429's error code names, in words."""
    if str(code) == str(GLOBAL_LIMIT_CODE):
        return f"the global rate limit (code {code}: 1200 requests / 5 min per user or token)"
    return f"another Cloudflare limiter (code {code}, not the global limit)"


def _quote(log_id: str) -> str:
    return urllib.parse.quote(log_id, safe="")
