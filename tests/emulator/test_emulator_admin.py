"""The admin routes under /__emulator/ tell a test what happened and let it change the world."""

from __future__ import annotations

import asyncio

import httpx

from pipeline.emulator.seed import generate_logs


def admin(emulator, method: str, path: str, **kwargs):
    return emulator.call(method, f"/__emulator/{path}", token=None, **kwargs)


def test_stats_count_requests_by_route_and_status(emulator, emulator_logs):
    """stats shows requests per route and status, 429s and total."""
    emulator.control.configure(rate_limit_requests=4)
    emulator.call("GET")
    emulator.call("GET", f"/{emulator_logs[0]['id']}")
    emulator.call("GET", "/missing")
    emulator.call("PATCH", f"/{emulator_logs[0]['id']}", json={"feedback": 1})
    emulator.call("GET")
    stats = admin(emulator, "GET", "stats").json()
    assert stats["requests"] == {
        "list": {"200": 1, "429": 1},
        "get": {"200": 1, "404": 1},
        "patch": {"200": 1},
    }
    assert stats["total_requests"] == 5
    assert stats["rate_limited"] == 1
    assert stats["in_flight"] == 0


def test_peak_concurrency_is_measured(emulator):
    """Concurrent requests in flight at once show up as peak_concurrency."""
    emulator.control.configure(latency_ms=10)
    gate = asyncio.Event()
    sleeping = 0

    async def sleep(seconds: float) -> None:  # hold every request until all five are in
        nonlocal sleeping
        sleeping += 1
        if sleeping == 5:
            gate.set()
        await gate.wait()

    async def go() -> None:
        from pipeline.emulator.app import create_app
        from pipeline.emulator.settings import EmulatorSettings

        app = create_app(EmulatorSettings(latency_ms=10), emulator.store, sleep=sleep)
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {emulator.read_token}"}
        async with httpx.AsyncClient(transport=transport, base_url=emulator.base_url) as client:
            await asyncio.gather(
                *(client.get(emulator.logs_path, headers=headers) for _ in range(5))
            )
        assert app.state.control.snapshot()["peak_concurrency"] == 5

    asyncio.run(go())


def test_patches_are_counted_per_log(emulator, emulator_logs):
    """patches shows how many PATCHes each log received, to prove none was sent twice."""
    a, b = emulator_logs[0]["id"], emulator_logs[1]["id"]
    for log_id in (a, b, a):
        emulator.call("PATCH", f"/{log_id}", json={"feedback": 1})
    emulator.call("PATCH", "/missing", json={"feedback": 1})
    assert admin(emulator, "GET", "patches").json() == {"total": 3, "by_log": {a: 2, b: 1}}


def test_reset_clears_statistics_but_keeps_the_data(emulator, emulator_logs):
    """reset forgets counters and rate-limit state; the logs and their feedback stay."""
    emulator.call("PATCH", f"/{emulator_logs[0]['id']}", json={"feedback": 1})
    assert admin(emulator, "POST", "reset").json() == {"success": True}
    stats = admin(emulator, "GET", "stats").json()
    assert stats["total_requests"] == 0 and stats["patches"]["total"] == 0
    assert (
        emulator.store.get(emulator.account_id, emulator.gateway_id, emulator_logs[0]["id"])[
            "feedback"
        ]
        == 1
    )


def test_seed_inserts_logs_into_any_gateway(emulator):
    """seed inserts logs (to the default gateway, or one named in the body), creating it."""
    logs = generate_logs(3, seed=1, start="2026-11-01", end="2026-11-02")
    response = admin(emulator, "POST", "seed", json={"logs": logs, "gateway_id": "other-gw"})
    assert response.json() == {"inserted": 3, "total": 3}
    listing = emulator.call(
        "GET", f"/client/v4/accounts/{emulator.account_id}/ai-gateway/gateways/other-gw/logs"
    )
    assert listing.json()["result_info"]["total_count"] == 3
    assert admin(emulator, "POST", "seed", json=logs).json()["total"] == 243
    assert admin(emulator, "POST", "seed", json={"logs": [{"id": "x"}]}).status_code == 400


def test_delete_and_read_ground_truth(emulator, emulator_logs):
    """logs/delete removes logs by id; logs/{id} shows a stored log with its bodies."""
    log = emulator_logs[0]
    stored = admin(emulator, "GET", f"logs/{log['id']}").json()
    assert stored["metadata"] == log["metadata"] and stored["request_body"] == log["request_body"]
    deleted = admin(emulator, "POST", "logs/delete", json={"ids": [log["id"], "nope"]})
    assert deleted.json() == {"deleted": 1}
    assert admin(emulator, "GET", f"logs/{log['id']}").status_code == 404
    assert admin(emulator, "POST", "logs/delete", json={"ids": "x"}).status_code == 400


def test_admin_routes_answer_loopback_clients_only(emulator):
    """A client that is not on loopback gets 403 from the admin routes."""

    async def go() -> int:
        transport = httpx.ASGITransport(app=emulator.app, client=("10.1.2.3", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://e") as client:
            return (await client.get("/__emulator/stats")).status_code

    assert asyncio.run(go()) == 403
    assert admin(emulator, "GET", "health").json() == {"ok": True}
