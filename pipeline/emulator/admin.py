"""Admin routes under ``/__emulator/``: what tests and demos need beyond the real API.

No token and no rate limit, but only for loopback clients. ``GET stats`` (requests by route and
status, 429s, peak concurrency, faults), ``GET patches`` (PATCHes per log id, to prove none was sent
twice), ``GET churn`` (ids inserted/deleted by churn), ``GET``/``POST config`` (read or change
settings at runtime), ``POST reset`` (statistics and rate-limit state), ``POST seed`` (insert logs),
``POST logs/delete`` (delete by id), ``GET logs/{id}`` (the stored log: ground truth), ``GET health``.
Request bodies may name ``account_id``/``gateway_id``; the default is the emulator's own gateway.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pipeline.emulator.responses import json_response

if TYPE_CHECKING:
    from pipeline.emulator.control import EmulatorControl

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost", "testclient"})

Handler = Callable[[Request], Awaitable[Response]]


def _error(status: int, message: str) -> Response:
    return json_response({"success": False, "errors": [{"message": message}]}, status)


def _loopback_only(handler: Handler) -> Handler:
    async def guarded(request: Request) -> Response:
        host = request.client.host if request.client else ""
        if host not in _LOOPBACK:
            return _error(403, "the emulator's admin routes answer loopback clients only")
        return await handler(request)

    return guarded


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"request body is not valid JSON ({exc.msg})") from None


def admin_routes(control: EmulatorControl) -> list[BaseRoute]:
    store = control.store

    def gateway_of(data: Any, request: Request) -> tuple[str, str]:
        source: dict[str, Any] = data if isinstance(data, dict) else {}
        account = source.get("account_id") or request.query_params.get("account_id")
        gateway = source.get("gateway_id") or request.query_params.get("gateway_id")
        return (
            str(account or control.default_account_id),
            str(gateway or control.default_gateway_id),
        )

    async def stats(request: Request) -> Response:
        return json_response(control.snapshot())

    async def patches(request: Request) -> Response:
        return json_response(control.patches())

    async def churned(request: Request) -> Response:
        return json_response(control.churned())

    async def get_config(request: Request) -> Response:
        return json_response(control.settings.to_dict())

    async def set_config(request: Request) -> Response:
        try:
            data = await _json_body(request)
            if not isinstance(data, dict):
                raise ValueError("send a JSON object of setting -> value")
            settings = control.configure(data)
        except ValueError as exc:
            return _error(400, str(exc))
        return json_response(settings.to_dict())

    async def reset(request: Request) -> Response:
        control.reset()
        return json_response({"success": True})

    async def seed(request: Request) -> Response:
        try:
            data = await _json_body(request)
            logs = data.get("logs") if isinstance(data, dict) else data
            if not isinstance(logs, list):
                raise ValueError('send a JSON array of logs or {"logs": [...]}')
            account, gateway = gateway_of(data, request)
            inserted = store.insert_logs(account, gateway, logs)
        except (ValueError, TypeError, KeyError) as exc:
            return _error(400, f"cannot insert logs: {exc}")
        return json_response({"inserted": inserted, "total": store.count(account, gateway)})

    async def delete_logs(request: Request) -> Response:
        try:
            data = await _json_body(request)
            ids = data.get("ids") if isinstance(data, dict) else None
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise ValueError('send {"ids": ["...", ...]}')
        except ValueError as exc:
            return _error(400, str(exc))
        account, gateway = gateway_of(data, request)
        return json_response({"deleted": store.delete_ids(account, gateway, ids)})

    async def stored_log(request: Request) -> Response:
        account, gateway = gateway_of(None, request)
        control.apply_due_writes()
        log = store.get(account, gateway, request.path_params["log_id"])
        if log is None:
            return _error(404, "no such log")
        return json_response(log)

    async def health(request: Request) -> Response:
        return json_response({"ok": True})

    table: list[tuple[str, Handler, str]] = [
        ("/stats", stats, "GET"),
        ("/patches", patches, "GET"),
        ("/churn", churned, "GET"),
        ("/config", get_config, "GET"),
        ("/config", set_config, "POST"),
        ("/reset", reset, "POST"),
        ("/seed", seed, "POST"),
        ("/logs/delete", delete_logs, "POST"),
        ("/logs/{log_id}", stored_log, "GET"),
        ("/health", health, "GET"),
    ]
    return [
        Route(f"/__emulator{path}", _loopback_only(handler), methods=[method])
        for path, handler, method in table
    ]
