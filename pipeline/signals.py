"""Graceful stops: SIGTERM and SIGINT turn into "no new request" for the run's budget.

systemd, CI runners and Kubernetes send SIGTERM on a timeout and SIGKILL a little later; a run that
dies at the first signal leaves no report and a stale lock. With `stop_on_signals` the first signal
stops the budget (``budget.stop``): whoever waits for a request slot gets BudgetExhausted, which every
stage already treats as a cap, so requests in flight finish and are journaled, the report is written
with the signal as its cause, and the lock is released.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.gateway.client import RequestBudget

log = logging.getLogger(__name__)


@contextmanager
def stop_on_signals(budget: RequestBudget) -> Iterator[None]:
    """SIGTERM (systemd, CI, Kubernetes on timeout) and SIGINT stop a run gracefully: no new
    request, the ones in flight finish and are journaled, the report says why, the lock is
    released, exit 1. A second signal acts as usual (Ctrl-C twice kills)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        yield
        return
    installed: list[signal.Signals] = []

    def stop(sig: signal.Signals) -> None:
        log.warning("%s received: stopping after the requests in flight", sig.name)
        budget.stop(f"stopped by {sig.name}")
        loop.remove_signal_handler(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop, sig)
        except (ValueError, RuntimeError, NotImplementedError):
            continue  # not the main thread (an orchestrator's worker): signals stay theirs
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
