"""Everything that talks to the Logs API. Stages get their client from `open_client(job)`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx

from pipeline.config import JobConfig
from pipeline.gateway.budget import Budget, budget_key
from pipeline.gateway.client import LogsClient
from pipeline.gateway.retry import RetryPolicy

__all__ = ["Budget", "LogsClient", "RetryPolicy", "open_client"]


def open_client(
    job: JobConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> LogsClient:
    """The job's Logs API client with its shared request budget and retry policy.

    Use as ``async with open_client(job) as client:``; ``client.budget.report()`` gives the
    report's requests{total, budget_per_s, utilisation}. Raises ConfigError when there is no token.
    """
    token = job.gateway.require_token()
    budget = Budget(
        job.budget,
        key=budget_key(job.gateway.base_url, token.reveal(), job.budget.bucket),
        clock=clock or time.time,
        sleep=sleep or asyncio.sleep,
    )
    retry = RetryPolicy(sleep=sleep or asyncio.sleep)
    return LogsClient(job.gateway, budget=budget, retry=retry, transport=transport)
