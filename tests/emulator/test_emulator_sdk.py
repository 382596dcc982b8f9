"""The official `cloudflare` SDK, unchanged, works against the emulator over real HTTP.

Including its quirks: `filters=` is sent as dotted parameters that the API ignores (so the SDK's
own filter form returns unfiltered results), while `extra_query={"filters": json.dumps(...)}` works.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import cloudflare
import pytest

from pipeline.emulator.seed import generate_logs
from pipeline.emulator.server import RunningEmulator, running_emulator
from pipeline.emulator.settings import EmulatorSettings
from tests.conftest import ManualClock


@pytest.fixture
def sdk(emulator_server: RunningEmulator) -> Iterator[cloudflare.Cloudflare]:
    with cloudflare.Cloudflare(
        api_token=emulator_server.edit_token, base_url=emulator_server.base_url, max_retries=0
    ) as client:
        yield client


def test_auto_paginated_list_with_json_filters_through_extra_query(
    sdk, emulator_server, emulator_logs
):
    """Iterating the SDK's list with JSON filters in extra_query yields exactly the matching logs."""
    filters = [
        {"key": "provider", "operator": "eq", "value": ["openai", "anthropic"]},
        {"key": "success", "operator": "eq", "value": [True]},
    ]
    logs = list(
        sdk.ai_gateway.logs.list(
            emulator_server.gateway_id,
            account_id=emulator_server.account_id,
            per_page=50,
            extra_query={"filters": json.dumps(filters)},
        )
    )
    expected = {
        log["id"]
        for log in emulator_logs
        if log["provider"] in ("openai", "anthropic") and log["success"]
    }
    assert {log.id for log in logs} == expected
    assert len(logs) == len(expected)
    pages = -(-len(expected) // 50)
    assert emulator_server.control.snapshot()["requests"]["list"] == {"200": pages + 1}, (
        "the SDK stops after one empty page"
    )


def test_the_sdks_own_filters_argument_is_silently_ignored(sdk, emulator_server):
    """`filters=` in the SDK is serialized as dotted params: like the real API, results are unfiltered."""
    page = sdk.ai_gateway.logs.list(
        emulator_server.gateway_id,
        account_id=emulator_server.account_id,
        per_page=5,
        filters=[{"key": "provider", "operator": "eq", "value": ["groq"]}],
    )
    assert page.result_info is not None
    assert page.result_info.total_count == 240
    assert {log.provider for log in page.result} != {"groq"}


def test_get_returns_the_detail_model(sdk, emulator_server, emulator_logs):
    """`get` parses into the SDK's model, heads and all; metadata stays a JSON string."""
    source = next(log for log in emulator_logs if log["metadata"])
    log = sdk.ai_gateway.logs.get(
        source["id"], account_id=emulator_server.account_id, gateway_id=emulator_server.gateway_id
    )
    assert log.id == source["id"]
    assert log.request_head == source["request_head"]
    assert json.loads(log.metadata or "") == source["metadata"]
    assert log.created_at.isoformat().startswith(source["created_at"][:19])


def test_edit_then_read_back(sdk, emulator_server, emulator_logs):
    """`edit` sets feedback, score and metadata; a following `get` shows them."""
    ids = {"account_id": emulator_server.account_id, "gateway_id": emulator_server.gateway_id}
    log_id = emulator_logs[10]["id"]
    sdk.ai_gateway.logs.edit(log_id, feedback=1, score=87, metadata={"reviewed_by": "qa"}, **ids)
    fetched = sdk.ai_gateway.logs.get(log_id, **ids).to_dict()
    assert (fetched["feedback"], fetched["score"]) == (1, 87)
    assert json.loads(fetched["metadata"]) == {"reviewed_by": "qa"}
    assert emulator_server.control.patches() == {"total": 1, "by_log": {log_id: 1}}


def test_sdk_exceptions_for_403_404_and_429(emulator_server, emulator_logs):
    """The SDK raises PermissionDeniedError, NotFoundError and RateLimitError for 403/404/429."""
    ids = {"account_id": emulator_server.account_id, "gateway_id": emulator_server.gateway_id}
    log_id = emulator_logs[0]["id"]
    with cloudflare.Cloudflare(
        api_token=emulator_server.read_token, base_url=emulator_server.base_url, max_retries=0
    ) as reader:
        with pytest.raises(cloudflare.PermissionDeniedError) as denied:
            reader.ai_gateway.logs.edit(log_id, feedback=1, **ids)
        assert denied.value.body == {
            "success": False,
            "errors": [{"code": 10000, "message": "Authentication error"}],
        }
        with pytest.raises(cloudflare.NotFoundError):
            reader.ai_gateway.logs.get("01NOSUCHLOG000000000000000", **ids)
        emulator_server.control.configure(rate_limit_requests=1)
        emulator_server.control.reset()
        reader.ai_gateway.logs.get(log_id, **ids)
        with pytest.raises(cloudflare.RateLimitError) as limited:
            reader.ai_gateway.logs.get(log_id, **ids)
        assert limited.value.response.headers["retry-after"] == "300"


def test_the_sdk_lists_gets_and_edits_uuid7_and_mixed_ids():
    """Against ULID, UUIDv7 and 64-hex ids together, the SDK pages, gets and edits every kind."""
    logs = generate_logs(
        120, seed=21, start="2026-10-06T00:00:00Z", end="2026-10-10T00:00:00Z", ids="cloudflare"
    ) + generate_logs(
        15, seed=22, start="2026-10-06T00:00:00Z", end="2026-10-10T00:00:00Z", ids="hex64"
    )
    kinds = {"ulid": 0, "uuid7": 0, "hex64": 0}
    for log in logs:
        log_id = str(log["id"])
        kinds["uuid7" if len(log_id) == 36 else "hex64" if len(log_id) == 64 else "ulid"] += 1
    assert all(kinds.values()), kinds
    clock = ManualClock()
    with (
        running_emulator(EmulatorSettings(), logs=logs, clock=clock, sleep=clock.sleep) as server,
        cloudflare.Cloudflare(
            api_token=server.edit_token, base_url=server.base_url, max_retries=0
        ) as sdk,
    ):
        ids = {"account_id": server.account_id, "gateway_id": server.gateway_id}
        listed = list(
            sdk.ai_gateway.logs.list(server.gateway_id, account_id=server.account_id, per_page=50)
        )
        assert sorted(log.id for log in listed) == sorted(str(log["id"]) for log in logs)
        samples = {
            kind: next(str(log["id"]) for log in logs if len(str(log["id"])) == length)
            for kind, length in (("ulid", 26), ("uuid7", 36), ("hex64", 64))
        }
        for log_id in samples.values():
            sdk.ai_gateway.logs.edit(log_id, feedback=-1, score=5, **ids)
            fetched = sdk.ai_gateway.logs.get(log_id, **ids).to_dict()
            assert (fetched["id"], fetched["feedback"], fetched["score"]) == (log_id, -1, 5)
        by_id = json.dumps([{"key": "id", "operator": "eq", "value": [samples["uuid7"]]}])
        page = sdk.ai_gateway.logs.list(
            server.gateway_id, account_id=server.account_id, extra_query={"filters": by_id}
        )
        assert [log.id for log in page.result] == [samples["uuid7"]]
        assert server.control.patches()["total"] == 3
