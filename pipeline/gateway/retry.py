"""The retry policy: transport errors and 5xx get capped exponential backoff with jitter.

429s are not retried here: the shared budget pauses every worker until Retry-After has passed, and the
client then sends the request again without counting it as a failed attempt (a 429 never fails a run).
The sleep is injectable so tests remove the waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from pipeline.errors import ServerError, TransportError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_wait: float = 0.5
    max_wait: float = 30.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        on_retry: Callable[[BaseException], None] | None = None,
    ) -> T:
        """Call fn, retrying ServerError and TransportError; re-raise the last one when out of tries."""

        def before_sleep(state: RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None:
                exc = state.outcome.exception()
                if exc is not None:
                    on_retry(exc)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            # initial_wait * 2**(attempt-1), plus up to initial_wait of jitter, capped at max_wait.
            wait=wait_exponential_jitter(
                multiplier=self.initial_wait, max=self.max_wait, jitter=self.initial_wait
            ),
            retry=retry_if_exception_type((ServerError, TransportError)),
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return await retrying(fn)


async def _no_sleep(_seconds: float) -> None:
    return None


NO_WAIT = RetryPolicy(sleep=_no_sleep)
"""For tests: the same attempts, no waiting."""


def retry_after(headers: Mapping[str, str]) -> float:
    """How long a 429 asks us to wait: its Retry-After in seconds (60 when absent or unreadable),
    at least 1 s so that a `Retry-After: 0` cannot turn a rate limit into a tight loop."""
    try:
        return max(1.0, float(headers.get("retry-after", "60")))
    except ValueError:
        return 60.0
