"""Cloudflare's envelopes and error bodies, exactly as the reference's tables show them.

Success: ``{"success": true, "errors": [], "messages": [], "result": ...}`` (+ ``result_info`` on
list), as Cloudflare's envelopes are. Errors: 400 with a message and ``"result": {}``; 400 code 6003
with ``error_chain`` code 6111 for a malformed Authorization header; 403 code 10000 (also for an
account the token cannot see); 404 code 7002; 404 code 7003 for an unknown route; 405 for a method
the route does not have; 429 code 971 (the per-token limit), 10040 (the per-account limiter) and
1015 (the per-IP limit).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

_JSON = "application/json"


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A compact JSON response (no spaces, UTF-8), cheaper than Starlette's JSONResponse."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(body, status_code=status, headers=headers, media_type=_JSON)


class ApiProblem(Exception):
    """Raised by a handler to answer with one of Cloudflare's error bodies."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body

    def response(self) -> Response:
        return json_response(self.body, self.status)


def bad_request(message: str) -> ApiProblem:
    return ApiProblem(400, {"success": False, "errors": [{"message": message}], "result": {}})


def malformed_auth(reason: str) -> ApiProblem:
    return ApiProblem(
        400,
        {
            "success": False,
            "errors": [
                {
                    "code": 6003,
                    "message": "Invalid request headers",
                    "error_chain": [{"code": 6111, "message": reason}],
                }
            ],
        },
    )


def auth_error() -> ApiProblem:
    return ApiProblem(
        403, {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}]}
    )


def not_found() -> ApiProblem:
    return ApiProblem(404, {"success": False, "errors": [{"code": 7002, "message": "Not Found"}]})


def success(result: Any = None, **extra: Any) -> dict[str, Any]:
    """A success envelope: ``errors`` and ``messages`` empty, as Cloudflare's are."""
    body: dict[str, Any] = {"success": True, "errors": [], "messages": []}
    if result is not None:
        body["result"] = result
    body.update(extra)
    return body


def no_route() -> ApiProblem:
    return ApiProblem(
        404,
        {
            "success": False,
            "errors": [{"code": 7003, "message": "No route for the URI"}],
            "messages": [],
            "result": None,
        },
    )


def method_not_allowed() -> ApiProblem:
    """405 for a method the route does not have (e.g. POST on ``/logs``). [assumed body]"""
    return ApiProblem(
        405,
        {
            "success": False,
            "errors": [{"code": 10405, "message": "Method not allowed"}],
            "messages": [],
            "result": None,
        },
    )


def bad_identifier(path: str) -> ApiProblem:
    return ApiProblem(
        400,
        {
            "success": False,
            "errors": [
                {
                    "code": 7003,
                    "message": (
                        f"Could not route to {path}, perhaps your object identifier is invalid?"
                    ),
                }
            ],
            "messages": [],
            "result": None,
        },
    )


ACCOUNT_LIMITED_BODY = {
    "success": False,
    "errors": [{"code": 10040, "message": "Rate limited, please retry later"}],
}

IP_LIMITED_BODY = {
    "success": False,
    "errors": [{"code": 1015, "message": "You are being rate limited"}],
}

RATE_LIMITED_BODY = {
    "success": False,
    "errors": [{"code": 971, "message": "Please wait and consider throttling your request speed"}],
}
