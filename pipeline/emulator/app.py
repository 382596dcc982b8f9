"""The emulated Cloudflare AI Gateway Logs API as a Starlette ASGI app.

Routes under ``/client/v4/accounts/{account_id}/ai-gateway/gateways/{gateway_id}/logs``: list, get
one, PATCH feedback, DELETE by filters, and the raw ``/request`` / ``/response`` bodies. Every API
request goes through one pipeline, in the order a client would notice it:

    latency -> per-IP limit (optional, 429 1015) -> rate limit (per token; headers on every
    answer) -> per-account limiter (optional, 429 10040) -> Authorization format (6003)
    -> token and scope (403 10000) -> injected 5xx / dropped connection -> the operation
    -> (maybe) a connection dropped after the write was applied

Edge shapes follow Cloudflare: an unknown route is 404 code 7003, a method a route lacks (POST on
``/logs``) 405, ``/logs/`` works like ``/logs``, an account the store does not know is 403 code
10000, success envelopes carry ``errors: []`` and ``messages: []``.

Handlers are ``async`` but call SQLite directly: a query takes far less than a thread hop would.
Admin routes live under ``/__emulator/`` (see ``admin.py``). ``create_app`` is the one entry point;
the mutable state is ``app.state.control`` (an ``EmulatorControl``).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.emulator import responses
from pipeline.emulator.admin import admin_routes
from pipeline.emulator.control import EmulatorControl
from pipeline.emulator.faults import DroppedConnection, churn
from pipeline.emulator.filters import QueryError, parse_delete_query, parse_list_query
from pipeline.emulator.patch import PatchError, parse_patch
from pipeline.emulator.ratelimit import headers as ratelimit_headers
from pipeline.emulator.settings import EmulatorSettings
from pipeline.emulator.store import EmulatorStore

PREFIX = "/client/v4/accounts/{account_id}/ai-gateway/gateways/{gateway_id}/logs"
_ACCOUNT_RE = re.compile(r"^[0-9a-fA-F]{32}$")
_GATEWAY_RE = re.compile(r"^[a-z0-9_]+(?:-[a-z0-9_]+)*$")
_BEARER_RE = re.compile(r"^Bearer ([A-Za-z0-9._~+/=-]+)$", re.IGNORECASE)

Operation = Callable[[Request, int], Awaitable[Response]]
# Routes answered without looking at the token: no such route (404 7003), no such method (405).
_UNROUTED = frozenset({"unknown", "method"})
_SUCCESS_HEAD = '{"success":true,"errors":[],"messages":[],'


class _Api:
    def __init__(self, control: EmulatorControl, sleep: Callable[[float], Awaitable[Any]]) -> None:
        self.control = control
        self.store = control.store
        self.sleep = sleep

    async def handle(self, request: Request, route: str, write: bool, op: Operation) -> Response:
        control = self.control
        stats = control.stats
        stats.started()
        status = "500"  # an emulator bug; Starlette answers 500
        try:
            response = await self._guarded(request, route, write, op)
            status = str(response.status_code)
            return response
        except DroppedConnection:
            status = "dropped"
            raise
        finally:
            stats.finished(route, status)

    async def _guarded(self, request: Request, route: str, write: bool, op: Operation) -> Response:
        control = self.control
        settings = control.settings
        faults = control.faults
        delay = faults.delay_seconds(settings)
        if delay > 0:
            await self.sleep(delay)

        if settings.ip_limit_per_second > 0:
            ip = control.ip_limiter.hit(_client_host(request), settings.ip_limit_per_second, 1.0, 0)
            if not ip.allowed:
                return responses.json_response(
                    responses.IP_LIMITED_BODY, 429, {"retry-after": str(ip.retry_after)}
                )

        token, problem = _credentials(request)
        key = token if token is not None else f"anonymous:{_client_host(request)}"
        decision = control.limiter.hit(
            key,
            settings.rate_limit_requests,
            settings.rate_limit_window,
            settings.effective_block_seconds,
        )
        headers = ratelimit_headers(
            decision,
            settings.rate_limit_requests,
            settings.rate_limit_window,
            policy=settings.ratelimit_policy_name,
            legacy=settings.legacy_ratelimit_headers,
        )
        try:
            if not decision.allowed:
                response = responses.json_response(responses.RATE_LIMITED_BODY, 429)
            elif not self._account_allows(request):
                response = responses.json_response(responses.ACCOUNT_LIMITED_BODY, 429)
                headers["retry-after"] = str(settings.account_limit_retry_after)
            elif problem is not None:
                raise problem
            else:
                scope = settings.tokens.get(token) if token is not None else None
                routed = route not in _UNROUTED
                if routed and (scope is None or (write and scope != "edit")):
                    raise responses.auth_error()
                fault = faults.server_error(settings)
                if fault is not None:
                    control.stats.injected_errors += 1
                    response = Response(fault.body, fault.status, media_type=fault.content_type)
                elif faults.drop_before(settings):
                    control.stats.dropped += 1
                    raise DroppedConnection()
                else:
                    response = await op(request, self._gateway(request, route))
                    if write and response.status_code == 200 and faults.drop_after_write(settings):
                        control.stats.dropped += 1
                        raise DroppedConnection()
        except responses.ApiProblem as exc:
            response = exc.response()
        response.headers.update(headers)
        return response

    def _account_allows(self, request: Request) -> bool:
        """The optional per-account limiter (a 429 code 10040 when it refuses)."""
        settings = self.control.settings
        account_id = request.path_params.get("account_id")
        if settings.account_limit_requests <= 0 or account_id is None:
            return True
        return self.control.account_limiter.hit(
            str(account_id).lower(),
            settings.account_limit_requests,
            settings.account_limit_window,
            0,
        ).allowed

    def _gateway(self, request: Request, route: str) -> int:
        if route == "unknown":
            raise responses.no_route()
        if route == "method":
            raise responses.method_not_allowed()
        params = request.path_params
        account_id, gateway_id = params["account_id"], params["gateway_id"]
        if not _ACCOUNT_RE.match(account_id):
            raise responses.bad_identifier(request.url.path)
        if len(gateway_id) > 64 or not _GATEWAY_RE.match(gateway_id):
            raise responses.bad_request(
                f"gateway_id: {gateway_id!r} must be 1-64 characters of a-z, 0-9, _ and -"
            )
        gw = self.store.gateway_key(account_id, gateway_id)
        if gw is None:
            if not self.store.has_account(account_id):
                raise responses.auth_error()  # Cloudflare: the token cannot see that account
            raise responses.not_found()
        return gw

    # -- operations ---------------------------------------------------------------------------
    async def list_logs(self, request: Request, gw: int) -> Response:
        try:
            query = parse_list_query(request.query_params)
        except QueryError as exc:
            raise responses.bad_request(str(exc)) from None
        control = self.control
        settings = control.settings
        if settings.churn_insert_per_list or settings.churn_delete_per_list:
            inserted, deleted = churn(self.store, gw, settings, control.faults.churn_rng)
            control.stats.churn_inserted.extend(inserted)
            control.stats.churn_deleted.extend(deleted)
        control.apply_due_writes()
        total = self.store.gw_count(gw, query.where)
        offset = (query.page - 1) * query.per_page
        entries = (
            self.store.gw_entries_json(
                gw,
                query.where,
                query.order_sql,
                query.per_page,
                offset,
                feedback=settings.list_feedback,
            )
            if offset < total
            else "[]"
        )
        info: dict[str, Any] = {
            "page": query.page,
            "per_page": query.per_page,
            "count": max(0, min(query.per_page, total - offset)),
            "total_count": total,
        }
        if query.meta_info:
            info.update(self.store.gw_aggregates(gw, query.where))
        # The entries are JSON already (rendered by SQLite); only the envelope is assembled here.
        body = f'{_SUCCESS_HEAD}"result":{entries},"result_info":{_dumps(info)}}}'
        return Response(body.encode(), media_type="application/json")

    async def get_log(self, request: Request, gw: int) -> Response:
        self.control.apply_due_writes()
        entry = self.store.gw_detail_json(gw, request.path_params["log_id"])
        if entry is None:
            raise responses.not_found()
        body = f'{_SUCCESS_HEAD}"result":{entry}}}'
        return Response(body.encode(), media_type="application/json")

    async def patch_log(self, request: Request, gw: int) -> Response:
        log_id = request.path_params["log_id"]
        try:
            changes = parse_patch(await request.body())
        except PatchError as exc:
            raise responses.bad_request(str(exc)) from None
        control = self.control
        lag = control.settings.write_lag_seconds
        if lag > 0:
            if not self.store.gw_exists(gw, log_id):
                raise responses.not_found()
            control.pending.add(control.clock() + lag, gw, log_id, changes)
            control.stats.writes_delayed += 1
        elif not self.store.gw_patch(gw, log_id, changes):
            raise responses.not_found()
        control.stats.patches[log_id] += 1
        return responses.json_response(responses.success({}))

    async def delete_logs(self, request: Request, gw: int) -> Response:
        try:
            query = parse_delete_query(request.query_params)
        except QueryError as exc:
            raise responses.bad_request(str(exc)) from None
        if not query.where.sql and not self.control.settings.delete_without_filters:
            raise responses.bad_request(
                "filters: a DELETE needs at least one filter; refusing to delete every log"
            )
        self.control.apply_due_writes()
        self.store.gw_delete_where(gw, query.where, query.order_sql, query.limit)
        return responses.json_response(responses.success())

    async def log_request(self, request: Request, gw: int) -> Response:
        return self._body(request, gw, "request")

    async def log_response(self, request: Request, gw: int) -> Response:
        return self._body(request, gw, "response")

    def _body(self, request: Request, gw: int, which: str) -> Response:
        found, body = self.store.gw_body(gw, request.path_params["log_id"], which)
        if not found:
            raise responses.not_found()
        return responses.json_response(body)

    async def unknown(self, request: Request, gw: int) -> Response:
        raise responses.no_route()

    async def wrong_method(self, request: Request, gw: int) -> Response:
        raise responses.method_not_allowed()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _credentials(request: Request) -> tuple[str | None, responses.ApiProblem | None]:
    """(token, problem): the bearer token (or legacy X-Auth-Key), or a 6003 for a bad header."""
    headers = request.headers
    authorization = headers.get("authorization")
    if authorization is not None:
        match = _BEARER_RE.match(authorization.strip())
        if match is None:
            return None, responses.malformed_auth("Invalid format for Authorization header")
        return match.group(1), None
    key, email = headers.get("x-auth-key"), headers.get("x-auth-email")
    if key is not None or email is not None:
        if not key or not email:
            return None, responses.malformed_auth("Invalid format for X-Auth-Key header")
        return key, None
    return None, None


def _client_host(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _on_drop(request: Request, exc: Exception) -> Response:
    """Abort the socket when served by ``server.py``; in-process, let the exception reach httpx."""
    abort = request.scope.get("extensions", {}).get("emulator.abort")
    if abort is None:
        raise exc
    abort()
    # Let the transport's connection_lost run, so uvicorn sees a disconnect and stays quiet.
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return _NoResponse()


class _NoResponse(Response):
    def __init__(self) -> None:
        super().__init__(b"")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        return None


def create_app(
    settings: EmulatorSettings,
    store: EmulatorStore,
    clock: Callable[[], float] = time.time,
    *,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> Starlette:
    """The emulator app over ``store``. ``clock`` drives the rate limit and the write lag;
    ``sleep`` is used for injected latency (tests pass a fake that advances their clock)."""
    control = EmulatorControl(settings, store, clock)
    api = _Api(control, sleep)

    def route(
        path: str, name: str, method: str | list[str], op: Operation, *, write: bool = False
    ) -> Route:
        async def endpoint(request: Request) -> Response:
            return await api.handle(request, name, write, op)

        methods = [method] if isinstance(method, str) else method
        return Route(path, endpoint, methods=methods, name=f"logs-{name}")

    routes = [
        route(PREFIX, "list", "GET", api.list_logs),
        route(PREFIX, "delete", "DELETE", api.delete_logs, write=True),
        # Cloudflare answers `/logs/` like `/logs`.
        route(PREFIX + "/", "list", "GET", api.list_logs),
        route(PREFIX + "/", "delete", "DELETE", api.delete_logs, write=True),
        route(PREFIX + "/{log_id}", "get", "GET", api.get_log),
        route(PREFIX + "/{log_id}", "patch", "PATCH", api.patch_log, write=True),
        route(PREFIX + "/{log_id}/request", "request", "GET", api.log_request),
        route(PREFIX + "/{log_id}/response", "response", "GET", api.log_response),
        # A method the route lacks is 405 (POST on /logs), not "no route".
        route(PREFIX, "method", ["POST", "PUT", "PATCH"], api.wrong_method),
        route(PREFIX + "/", "method", ["POST", "PUT", "PATCH"], api.wrong_method),
        route(PREFIX + "/{log_id}", "method", ["POST", "PUT", "DELETE"], api.wrong_method),
        route(
            PREFIX + "/{log_id}/request",
            "method",
            ["POST", "PUT", "PATCH", "DELETE"],
            api.wrong_method,
        ),
        route(
            PREFIX + "/{log_id}/response",
            "method",
            ["POST", "PUT", "PATCH", "DELETE"],
            api.wrong_method,
        ),
        *admin_routes(control),
    ]
    unknown = route("/client/v4/{rest:path}", "unknown", "GET", api.unknown)
    routes.append(
        Route(
            "/client/v4/{rest:path}",
            unknown.endpoint,
            methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        )
    )
    app = Starlette(routes=routes, exception_handlers={DroppedConnection: _on_drop})
    app.state.control = control
    return app
