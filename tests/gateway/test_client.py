"""The Logs API client: what a caller gets back for each kind of answer, and the token kept secret."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.config import JobConfig
from pipeline.errors import (
    AuthError,
    BadRequestError,
    NotFoundError,
    PipelineError,
    ServerError,
    TransportError,
)
from pipeline.gateway import LogsClient, open_client
from pipeline.gateway.client import encode_filters
from pipeline.gateway.retry import NO_WAIT
from tests.extractkit import Emulator, FakeTime, logs_at, make_job

TOKEN = "tok-9f8e7d6c5b4a-never-show-me"
Handler = Callable[[httpx.Request], httpx.Response]


def ok(result: Any, info: dict[str, Any] | None = None) -> httpx.Response:
    body: dict[str, Any] = {"success": True, "errors": [], "result": result}
    if info is not None:
        body["result_info"] = info
    return httpx.Response(200, json=body)


def error(status: int, code: int, message: str, **headers: str) -> httpx.Response:
    body = {"success": False, "errors": [{"code": code, "message": message}], "result": None}
    return httpx.Response(status, json=body, headers=headers)


def job_for(tmp_path: Path) -> JobConfig:
    return make_job(tmp_path, base_url="https://api.test/client/v4", token=TOKEN)


def call(tmp_path: Path, handler: Handler, what: Callable[[LogsClient], Any]) -> Any:
    """Run `what(client)` against `handler` with the job's budget, no retry waits."""
    time = FakeTime()

    async def go() -> Any:
        async with open_client(
            job_for(tmp_path), transport=httpx.MockTransport(handler), clock=time, sleep=time.sleep
        ) as client:
            client.retry = NO_WAIT
            return await what(client), client

    return asyncio.run(go())


def test_filters_travel_as_one_json_query_parameter(tmp_path: Path) -> None:
    """filters is ONE parameter holding a JSON array (the SDKs' dotted form is silently ignored)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok([], {"page": 2, "per_page": 50, "count": 0, "total_count": 0})

    filters = [
        {"key": "created_at", "operator": "gt", "value": ["2026-11-01T00:00:00.000Z"]},
        {"key": "model", "operator": "eq", "value": ["gpt-4o", "gpt-4o-mini"]},
    ]
    call(tmp_path, handler, lambda c: c.list_logs(filters=filters, page=2))

    [request] = seen
    params = request.url.params
    assert json.loads(params["filters"]) == filters
    assert not [k for k in params if k.startswith("filters.")]
    assert params["page"] == "2" and params["per_page"] == "50"
    assert params["order_by"] == "created_at" and params["order_by_direction"] == "asc"
    assert request.url.path.endswith("/ai-gateway/gateways/demo-gateway/logs")  # no trailing /
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert encode_filters(filters) == params["filters"]


def test_a_page_comes_back_typed(tmp_path: Path) -> None:
    """Entries and result_info become a LogPage."""
    entries = [{"id": "a", "created_at": "2026-11-01T00:00:00.000Z"}]

    def handler(request: httpx.Request) -> httpx.Response:
        return ok(entries, {"page": 1, "per_page": 50, "count": 1, "total_count": 7})

    page, _ = call(tmp_path, handler, lambda c: c.list_logs())
    assert page.entries == entries
    assert (page.page, page.per_page, page.count, page.total_count) == (1, 50, 1, 7)


@pytest.mark.parametrize(
    ("response", "kind", "words"),
    [
        (error(403, 10000, "Authentication error"), AuthError, "AI Gateway Read"),
        (error(401, 10000, "Authentication error"), AuthError, "AI Gateway Edit"),
        (error(400, 6003, "Invalid request headers"), AuthError, "malformed"),
        (error(400, 0, "per_page: must be between 1 and 50"), BadRequestError, "per_page"),
        (error(404, 7002, "Not Found"), NotFoundError, "not found"),
        (httpx.Response(503, text="<html>busy</html>"), ServerError, "503"),
    ],
)
def test_each_failure_becomes_one_kind_of_error(
    tmp_path: Path, response: httpx.Response, kind: type[PipelineError], words: str
) -> None:
    """403 says which permission is needed, 400 carries the API's message, 404 is NotFound, 5xx
    (after its retries) is a ServerError; none of them shows the token."""

    def handler(request: httpx.Request) -> httpx.Response:
        return response

    with pytest.raises(kind) as info:
        call(tmp_path, handler, lambda c: c.get_log("abc"))
    assert words in str(info.value)
    assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)


def test_5xx_and_dropped_connections_are_retried_then_succeed(tmp_path: Path) -> None:
    """Two failures then an answer: the caller gets the answer; the retries are counted."""
    answers: list[Callable[[], httpx.Response]] = [
        lambda: httpx.Response(502, text="bad gateway"),
        lambda: (_ for _ in ()).throw(httpx.RemoteProtocolError("Server disconnected")),
        lambda: ok({"id": "abc"}),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)()

    result, client = call(tmp_path, handler, lambda c: c.get_log("abc"))
    assert result == {"id": "abc"}
    assert client.stats.retries == 2 and client.stats.requests == 3


def test_a_connection_that_keeps_failing_is_a_transport_error(tmp_path: Path) -> None:
    """After the last attempt the error says what failed, without the token."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(TransportError, match="ConnectError") as info:
        call(tmp_path, handler, lambda c: c.list_logs())
    assert TOKEN not in str(info.value)


def test_a_429_is_waited_out_and_sent_again_never_raised(tmp_path: Path) -> None:
    """A 429 pauses for Retry-After (fake time), then the same request goes again and succeeds."""
    answers = [error(429, 971, "Please wait", **{"retry-after": "300"}), ok({"id": "abc"})]
    sent_at: list[float] = []
    time = FakeTime()

    def handler(request: httpx.Request) -> httpx.Response:
        sent_at.append(time())
        return answers.pop(0)

    async def go() -> tuple[dict[str, Any], LogsClient]:
        async with open_client(
            job_for(tmp_path), transport=httpx.MockTransport(handler), clock=time, sleep=time.sleep
        ) as client:
            return await client.get_log("abc"), client

    result, client = asyncio.run(go())
    assert result == {"id": "abc"}
    assert client.stats.rate_limited == 1 and client.stats.retries == 0
    assert sent_at[1] - sent_at[0] >= 300


def test_ids_are_quoted_into_the_path(tmp_path: Path) -> None:
    """An id with odd characters cannot escape its path segment."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return ok({})

    call(tmp_path, handler, lambda c: c.patch_log("a/b?c", {"feedback": 1}))
    assert seen[0].endswith("/logs/a%2Fb%3Fc")


def test_the_token_is_in_no_repr(tmp_path: Path) -> None:
    """Printing the job, its gateway or the client never shows the token."""
    job = job_for(tmp_path)
    client = open_client(job)
    try:
        for text in (repr(job), str(job), repr(job.gateway), repr(client), repr(client.budget)):
            assert TOKEN not in text
    finally:
        asyncio.run(client.aclose())


def test_against_the_emulator_a_read_token_lists_and_cannot_patch(tmp_path: Path) -> None:
    """The real app in-process: listing works with the read token; PATCH says Edit is needed."""
    emulator = Emulator(logs_at([1_793_491_200_000 + i for i in range(3)]))
    job = make_job(tmp_path)

    async def go() -> None:
        async with open_client(job, transport=emulator.transport()) as client:
            page = await client.list_logs(per_page=2)
            assert page.total_count == 3 and len(page.entries) == 2
            with pytest.raises(AuthError, match="AI Gateway Edit"):
                await client.patch_log(page.entries[0]["id"], {"feedback": 1})
            with pytest.raises(NotFoundError):
                await client.get_log("no-such-log")
            with pytest.raises(BadRequestError, match="per_page"):
                await client.list_logs(per_page=51)

    asyncio.run(go())
