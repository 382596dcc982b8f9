"""Look-ups by id cost what ``lookup_cost`` says: batches of 50, a bounded few GETs, never one each."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from pipeline.gateway.client import LogsClient
from pipeline.gateway.lookup import lookup_cost, lookup_logs
from pipeline.gateway.retry import NO_WAIT
from tests.test_plan import FakeApi, api_log, make_job


def _lookup(tmp_path: Path, api: FakeApi, ids: list[str], **kw: Any) -> Any:
    job = make_job(tmp_path)

    async def go() -> Any:
        async with LogsClient(job.gateway, retry=NO_WAIT, transport=httpx.MockTransport(api)) as c:
            return await lookup_logs(c, ids, **kw)

    return asyncio.run(go())


def test_ids_a_batch_did_not_return_are_missing_after_a_few_confirming_gets(
    tmp_path: Path,
) -> None:
    """1,000 wrong ids: 20 list requests and 5 GETs, all reported missing."""
    api = FakeApi({})
    found = _lookup(tmp_path, api, [f"nope-{i}" for i in range(1_000)])
    assert len(found.missing) == 1_000 and not found.unresolved
    assert (found.list_requests, found.get_requests) == (20, 5)
    assert len(api.requests) == 25
    assert found.requests <= sum(lookup_cost(1_000))


def test_a_list_that_does_not_answer_for_ids_is_read_by_get_within_the_bound(
    tmp_path: Path,
) -> None:
    """Logs the list hides (lag, a dropped filter) are fetched by GET up to max_gets; the rest are
    unresolved, never called not found."""
    logs = {f"old-{i}": api_log(f"old-{i}", feedback=1) for i in range(300)}
    api = FakeApi(logs)
    api.hide_from_list = set(logs)
    found = _lookup(tmp_path, api, list(logs), max_gets=100)
    assert len(found.entries) == 105  # the 5 confirming GETs, then 100 more
    assert len(found.unresolved) == 195 and not found.missing
    assert found.requests == 6 + 105


def test_entries_without_feedback_are_read_again_only_when_asked(tmp_path: Path) -> None:
    """need_feedback: an entry listed without feedback/score is fetched by GET (verify's read-back)."""
    logs = {f"old-{i}": api_log(f"old-{i}") for i in range(60)}
    for entry in logs.values():
        entry.pop("score", None)
    api = FakeApi(logs)
    plain = _lookup(tmp_path, api, list(logs))
    assert plain.requests == 2
    reread = _lookup(tmp_path, api, list(logs), need_feedback=True, max_gets=None)
    assert reread.requests == 2 + 60
