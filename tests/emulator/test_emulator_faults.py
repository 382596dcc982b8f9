"""Injected faults behave as configured, reproducibly, and can be switched on mid-way."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from pipeline.emulator.faults import DroppedConnection
from pipeline.emulator.settings import EmulatorSettings
from pipeline.emulator.timefmt import to_ms


def statuses(emulator, n: int) -> list[int]:
    return [emulator.call("GET", params={"per_page": 1}).status_code for _ in range(n)]


def test_latency_and_jitter_use_the_injected_sleep(emulator):
    """Latency is added before every answer; with a fake sleep the test's clock moves instead."""
    emulator.control.configure(latency_ms=250, jitter_ms=100)
    start = emulator.clock()
    emulator.call("GET")
    waited = emulator.clock() - start
    assert 0.25 <= waited <= 0.35


def test_server_errors_follow_the_rate_and_look_like_cloudflares(emulator):
    """error_rate=1 answers every request with 500 (JSON) or 502/503 (HTML from the edge)."""
    emulator.control.configure(error_rate=1.0)
    seen = {}
    for _ in range(20):
        response = emulator.call("GET")
        seen[response.status_code] = response
        assert "ratelimit" in response.headers
    assert set(seen) <= {500, 502, 503} and len(seen) >= 2
    if 500 in seen:
        assert seen[500].json()["success"] is False
    for status in {502, 503} & set(seen):
        assert seen[status].headers["content-type"].startswith("text/html")


def test_same_seed_same_faults(emulator):
    """The same seed and request sequence give the same faults; another seed, others."""
    emulator.control.configure(error_rate=0.3, seed=42)
    first = statuses(emulator, 30)
    emulator.control.reset()
    assert statuses(emulator, 30) == first
    emulator.control.configure(seed=43)
    assert statuses(emulator, 30) != first
    assert 0 < first.count(200) < 30


def test_dropped_connection_in_process_is_an_httpx_transport_error(emulator):
    """Mounted in-process, a dropped connection raises httpx.TransportError to the client."""
    emulator.control.configure(drop_rate=1.0)
    with pytest.raises(httpx.TransportError) as caught:
        emulator.call("GET")
    assert isinstance(caught.value, DroppedConnection)
    assert emulator.control.snapshot()["requests"]["list"] == {"dropped": 1}


def test_drop_before_write_leaves_the_log_unchanged(emulator, emulator_logs):
    """drop_rate drops the request before it has any effect."""
    log = emulator_logs[0]
    emulator.control.configure(drop_rate=1.0)
    with pytest.raises(httpx.TransportError):
        emulator.call("PATCH", f"/{log['id']}", json={"feedback": 1, "score": 99})
    stored = emulator.store.get(emulator.account_id, emulator.gateway_id, log["id"])
    assert stored["score"] == log["score"]


def test_drop_after_write_applies_the_patch_without_telling(emulator, emulator_logs):
    """drop_after_write_rate applies the PATCH, then drops: the client cannot know it landed."""
    log_id = emulator_logs[0]["id"]
    emulator.control.configure(drop_after_write_rate=1.0)
    with pytest.raises(httpx.TransportError):
        emulator.call("PATCH", f"/{log_id}", json={"score": 99})
    assert emulator.store.get(emulator.account_id, emulator.gateway_id, log_id)["score"] == 99
    assert emulator.call("GET", f"/{log_id}").status_code == 200, "reads are never dropped by it"


def test_write_lag_hides_a_patch_until_its_time(emulator, emulator_logs):
    """With write lag, a PATCH is acknowledged at once but GET and list see it only later."""
    log_id = emulator_logs[0]["id"]
    emulator.control.configure(write_lag_seconds=5.0)
    assert emulator.call("PATCH", f"/{log_id}", json={"feedback": -1}).status_code == 200
    assert emulator.call("GET", f"/{log_id}").json()["result"]["feedback"] is None
    emulator.clock.advance(4.9)
    assert emulator.call("GET", f"/{log_id}").json()["result"]["feedback"] is None
    emulator.clock.advance(0.1)
    assert emulator.call("GET", f"/{log_id}").json()["result"]["feedback"] == -1
    page = emulator.call("GET", params={"per_page": 50, "order_by_direction": "asc"})
    assert page.json()["result"][0]["feedback"] == -1


def test_write_lag_still_reports_unknown_ids_at_once(emulator):
    """A delayed write to an id that does not exist is a 404 straight away."""
    emulator.control.configure(write_lag_seconds=5.0)
    assert emulator.call("PATCH", "/nope", json={"feedback": 1}).status_code == 404


def test_churn_inserts_late_logs_and_deletes_others_on_each_list(emulator, emulator_logs):
    """Each list inserts logs dated inside the stored range and deletes random ones."""
    oldest = min(to_ms(log["created_at"]) for log in emulator_logs)
    newest = max(to_ms(log["created_at"]) for log in emulator_logs)
    emulator.control.configure(churn_insert_per_list=3, churn_delete_per_list=2)
    for _ in range(4):
        assert emulator.call("GET").status_code == 200
    churned = emulator.call("GET", "/__emulator/churn", token=None).json()
    assert len(churned["inserted"]) == 12 and len(churned["deleted"]) == 8
    ids = set(emulator.store.all_ids(emulator.account_id, emulator.gateway_id))
    assert len(ids) == 240 + 12 - 8
    assert ids.isdisjoint(churned["deleted"])
    for log_id in set(churned["inserted"]) & ids:
        stored = emulator.store.get(emulator.account_id, emulator.gateway_id, log_id)
        assert oldest <= to_ms(stored["created_at"]) <= newest


def test_churn_is_reproducible(emulator_logs):
    """The same seed inserts the same logs and deletes the same ids."""
    from pipeline.emulator.app import create_app
    from pipeline.emulator.store import EmulatorStore

    runs = []
    for _ in range(2):
        with EmulatorStore() as store:
            store.insert_logs("0" * 32, "g", emulator_logs)
            app = create_app(
                EmulatorSettings(churn_insert_per_list=2, churn_delete_per_list=2, seed=5), store
            )

            async def go(app: Any = app) -> None:
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://e") as client:
                    for _ in range(3):
                        await client.get(
                            f"/client/v4/accounts/{'0' * 32}/ai-gateway/gateways/g/logs",
                            headers={"Authorization": "Bearer demo-read-token"},
                        )

            asyncio.run(go())
            runs.append(app.state.control.churned())
    assert runs[0] == runs[1]


def test_faults_can_be_switched_on_mid_way_over_http(emulator):
    """POST /__emulator/config changes settings at runtime; bad values are a 400."""
    assert emulator.call("GET").status_code == 200
    changed = emulator.call("POST", "/__emulator/config", token=None, json={"error_rate": 1.0})
    assert changed.status_code == 200 and changed.json()["error_rate"] == 1.0
    assert emulator.call("GET").status_code >= 500
    for bad in (
        {"error_rate": 2},
        {"nope": 1},
        {"latency_ms": "slow"},
        {"churn_insert_per_list": 1.5},
    ):
        response = emulator.call("POST", "/__emulator/config", token=None, json=bad)
        assert response.status_code == 400, bad
    assert emulator.call("GET", "/__emulator/config", token=None).json()["error_rate"] == 1.0
