"""Logs by id: batched look-ups and one-GET-each fetches, shared by plan, verify and the judge.

The API has no "get many": a list request with an ``id`` filter returns up to 50 of the asked ids
(``BATCH``), one request for 50 logs, and a GET returns one log with its extras (request and
response heads). ``lookup_logs`` uses the first and falls back to GETs only for ids a batch did not
return; ``get_each`` is the GETs alone, for when the extras are the point. Both keep at most
``concurrency`` requests in flight; the client's budget paces them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from pipeline.errors import BudgetExhausted, NotFoundError
from pipeline.gateway.client import LogEntry, LogsClient

BATCH = 50  # the API's per_page limit, and so the most ids one filtered list request can return


@dataclass(frozen=True)
class Lookup:
    """Logs fetched by id: the entries found, the ids that do not exist, and what it cost."""

    entries: dict[str, LogEntry]
    missing: frozenset[str]
    list_requests: int
    get_requests: int
    stopped: str | None = None  # the budget ran out (get_each with stop_on_budget): why

    @property
    def requests(self) -> int:
        return self.list_requests + self.get_requests


async def lookup_logs(client: LogsClient, ids: Sequence[str], *, concurrency: int = 4) -> Lookup:
    """Fetch logs by id: a filtered list request per 50 ids, then GET for ids a batch missed.

    Entries whose id was not asked for are ignored: were the filter ever dropped on the way (the
    official SDKs do that), the API would answer with unrelated logs, and they must not count.
    """
    wanted = list(dict.fromkeys(ids))
    batches = [wanted[i : i + BATCH] for i in range(0, len(wanted), BATCH)]
    found: dict[str, LogEntry] = {}
    gate = asyncio.Semaphore(max(1, concurrency))

    async def list_batch(batch: list[str]) -> None:
        async with gate:
            page = await client.list_logs(
                filters=[{"key": "id", "operator": "eq", "value": batch}], per_page=BATCH
            )
        asked = set(batch)
        for entry in page.entries:
            log_id = entry.get("id")
            if isinstance(log_id, str) and log_id in asked:
                found[log_id] = entry

    await asyncio.gather(*(list_batch(b) for b in batches))
    unreturned = [i for i in wanted if i not in found]
    fetched = await get_each(client, unreturned, concurrency=concurrency)
    found.update(fetched.entries)
    return Lookup(found, fetched.missing, len(batches), len(unreturned))


async def get_each(
    client: LogsClient, ids: Sequence[str], *, concurrency: int = 4, stop_on_budget: bool = False
) -> Lookup:
    """One GET per id (404: missing). ``stop_on_budget``: when the run's cap is reached, return
    what was fetched so far (``stopped`` says why) instead of raising BudgetExhausted."""
    found: dict[str, LogEntry] = {}
    missing: set[str] = set()
    gate = asyncio.Semaphore(max(1, concurrency))
    stopped: list[str] = []
    sent = [0]

    async def one(log_id: str) -> None:
        async with gate:
            if stopped:
                return
            try:
                sent[0] += 1
                found[log_id] = await client.get_log(log_id)
            except NotFoundError:
                missing.add(log_id)
            except BudgetExhausted as exc:
                if not stop_on_budget:
                    raise
                sent[0] -= 1
                stopped.append(str(exc))

    await asyncio.gather(*(one(i) for i in dict.fromkeys(ids)))
    return Lookup(found, frozenset(missing), 0, sent[0], stopped[0] if stopped else None)


def entries_frame(entries: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """API entries -> id, feedback, score, metadata (canonical JSON) and whether each field was there.

    A field the response does not carry is unknown, not empty: ``has_*`` says which.
    """
    rows = [
        {
            "id": str(e["id"]),
            "feedback": _as_int(e.get("feedback")),
            "score": _as_float(e.get("score")),
            "metadata": canonical_metadata(e.get("metadata")),
            "has_feedback": "feedback" in e,
            "has_score": "score" in e,
            "has_metadata": "metadata" in e,
            "provider": _as_str(e.get("provider")),
            "model": _as_str(e.get("model")),
        }
        for e in entries
    ]
    return pl.DataFrame(
        rows,
        schema={
            "id": pl.String,
            "feedback": pl.Int8,
            "score": pl.Float64,
            "metadata": pl.String,
            "has_feedback": pl.Boolean,
            "has_score": pl.Boolean,
            "has_metadata": pl.Boolean,
            "provider": pl.String,
            "model": pl.String,
        },
    )


def canonical_metadata(value: Any) -> str | None:
    """The API's metadata (a JSON string, sometimes a map) as sorted compact JSON; None if empty.

    A value that is not a JSON map is kept as it came, so the plan can see it cannot merge into it.
    """
    if value is None or value == "":
        return None
    parsed = value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
    if isinstance(parsed, dict):
        return json.dumps(parsed, sort_keys=True, separators=(",", ":")) if parsed else None
    return value if isinstance(value, str) else json.dumps(value)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _as_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
