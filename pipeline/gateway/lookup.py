"""Logs by id: batched look-ups and one-GET-each fetches, shared by plan, verify and the judge.

The API has no "get many": a list request with an ``id`` filter returns up to 50 of the asked ids
(``BATCH``), one request for 50 logs, and a GET returns one log with its extras (request and
response heads). Both keep at most ``concurrency`` requests in flight; the client's budget paces them.

What a look-up costs is known before it starts (``lookup_cost``), so a plan can say it first:

- one list request per 50 ids;
- ids a batch did not return are ``missing`` **without a GET each** (a CSV of 100,000 wrong ids must
  not cost 100,000 requests). A few of them (``confirm``, default 5) are GET to check that the list
  really answers for ids: should one exist after all (a server that ignored the filter, read lag),
  the rest are fetched by GET too, up to ``max_gets``, and any beyond stay ``unresolved`` — never
  reported as not found;
- an entry the list returned without ``feedback`` or ``score`` (the list schema does not promise
  them) is read again by GET when ``need_feedback``, up to ``max_gets``; past that it stays as listed,
  its fields unknown (``entries_frame``'s ``has_*`` columns say so).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.errors import BudgetExhausted, NotFoundError
from pipeline.gateway.client import LogEntry, LogsClient
from pipeline.ids import canonical_id

if TYPE_CHECKING:
    import polars as pl

BATCH = 50  # the API's per_page limit, and so the most ids one filtered list request can return
CONFIRM = 5  # GETs that check "not returned" means "does not exist"
MAX_GETS = 200  # GETs a look-up may add beyond its list requests (about 50 s at Cloudflare's limit)


@dataclass(frozen=True)
class Lookup:
    """Logs fetched by id: the entries found, the ids that do not exist, and what it cost."""

    entries: dict[str, LogEntry]
    missing: frozenset[str]
    list_requests: int
    get_requests: int
    stopped: str | None = None  # the budget ran out (get_each with stop_on_budget): why
    unresolved: frozenset[str] = frozenset()  # not returned, not confirmed absent (GET bound hit)

    @property
    def requests(self) -> int:
        return self.list_requests + self.get_requests


def lookup_cost(ids: int, *, confirm: int = CONFIRM, max_gets: int = MAX_GETS) -> tuple[int, int]:
    """(list requests, the most GETs) that ``lookup_logs`` can spend on ``ids`` distinct ids."""
    if ids <= 0:
        return 0, 0
    return math.ceil(ids / BATCH), min(ids, max(confirm, 0) + max(max_gets, 0))


def _shows_feedback(entry: Mapping[str, Any]) -> bool:
    return "feedback" in entry and "score" in entry


async def lookup_logs(
    client: LogsClient,
    ids: Sequence[str],
    *,
    concurrency: int = 4,
    need_feedback: bool = False,
    confirm: int = CONFIRM,
    max_gets: int | None = MAX_GETS,
) -> Lookup:
    """Fetch logs by id: a filtered list request per 50 ids, then the bounded GETs above.

    Ids compare in their canonical spelling (``pipeline.ids``); entries are keyed by the id as
    asked. Entries whose id was not asked for are ignored: were the filter ever dropped on the way (the
    official SDKs do that), the API would answer with unrelated logs, and they must not count.
    ``max_gets`` None: no bound (verify reads back every log it wrote).
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
        asked = {canonical_id(i): i for i in batch}
        for entry in page.entries:
            log_id = entry.get("id")
            if isinstance(log_id, str) and canonical_id(log_id) in asked:
                found[asked[canonical_id(log_id)]] = entry

    await asyncio.gather(*(list_batch(b) for b in batches))
    gets_left = len(wanted) if max_gets is None else max_gets
    spent = 0

    unreturned = [i for i in wanted if i not in found]
    sample = await get_each(client, unreturned[: max(confirm, 0)], concurrency=concurrency)
    spent += sample.get_requests
    found.update(sample.entries)
    missing = set(sample.missing)
    rest = unreturned[max(confirm, 0) :]
    unresolved: list[str] = []
    if sample.entries and rest:  # the list does not answer for every id it holds: ask each
        more = await get_each(client, rest[:gets_left], concurrency=concurrency)
        spent += more.get_requests
        gets_left -= more.get_requests
        found.update(more.entries)
        missing |= more.missing
        unresolved = rest[more.get_requests :]
    else:
        missing.update(rest)

    if need_feedback:
        bare = [i for i in wanted if i in found and not _shows_feedback(found[i])]
        reread = await get_each(client, bare[: max(gets_left, 0)], concurrency=concurrency)
        spent += reread.get_requests
        found.update(reread.entries)
        missing |= reread.missing
        for log_id in reread.missing:
            found.pop(log_id, None)
    return Lookup(found, frozenset(missing), len(batches), spent, unresolved=frozenset(unresolved))


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
    import polars as pl  # here, not at the top: the client side (check, the extract) stays light

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
