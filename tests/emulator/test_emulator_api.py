"""The emulator answers like Cloudflare's Logs API: request -> status, body and headers.

Table-driven over the in-process app (``httpx.ASGITransport``); the reference's tables are the spec.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

AUTH_ERROR = {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}]}
NOT_FOUND = {"success": False, "errors": [{"code": 7002, "message": "Not Found"}]}
MALFORMED_AUTH = {
    "success": False,
    "errors": [
        {
            "code": 6003,
            "message": "Invalid request headers",
            "error_chain": [{"code": 6111, "message": "Invalid format for Authorization header"}],
        }
    ],
}
OTHER_ACCOUNT = "/client/v4/accounts/ffffffffffffffffffffffffffffffff/ai-gateway/gateways"


def _filters(*items: tuple[str, str, list[Any]]) -> dict[str, str]:
    return {"filters": json.dumps([{"key": k, "operator": o, "value": v} for k, o, v in items])}


# (case id, method, path, query params, json body, token, expected status, message fragment)
BAD_REQUESTS = [
    ("per_page 0", "GET", "", {"per_page": "0"}, None, "per_page"),
    ("per_page 51", "GET", "", {"per_page": "51"}, None, "per_page"),
    ("per_page not a number", "GET", "", {"per_page": "ten"}, None, "per_page"),
    ("page 0", "GET", "", {"page": "0"}, None, "page"),
    ("order_by unknown", "GET", "", {"order_by": "cost"}, None, "order_by"),
    ("direction unknown", "GET", "", {"order_by_direction": "up"}, None, "order_by_direction"),
    ("meta_info not a bool", "GET", "", {"meta_info": "maybe"}, None, "meta_info"),
    ("filters not JSON", "GET", "", {"filters": "[{key:"}, None, "not valid JSON"),
    ("filters not an array", "GET", "", {"filters": '"provider"'}, None, "array"),
    ("filter key unknown", "GET", "", _filters(("score", "eq", [1])), None, "'score'"),
    ("operator unknown", "GET", "", _filters(("duration", "gte", [1])), None, "'gte'"),
    (
        "value not an array",
        "GET",
        "",
        {"filters": '[{"key":"model","operator":"eq","value":"x"}]'},
        None,
        "value",
    ),
    ("value missing", "GET", "", {"filters": '[{"key":"model","operator":"eq"}]'}, None, "value"),
    ("number for text-only op", "GET", "", _filters(("cost", "contains", ["1"])), None, "contains"),
    ("not a number", "GET", "", _filters(("duration", "gt", ["slow"])), None, "number"),
    (
        "not a timestamp",
        "GET",
        "",
        _filters(("created_at", "gt", ["yesterday"])),
        None,
        "timestamp",
    ),
    ("delete limit 0", "DELETE", "", {"limit": "0"}, None, "limit"),
    ("delete limit 10001", "DELETE", "", {"limit": "10001"}, None, "limit"),
    ("delete bad filter", "DELETE", "", _filters(("nope", "eq", [1])), None, "'nope'"),
    ("patch feedback 2", "PATCH", "/{id}", None, {"feedback": 2}, "feedback"),
    ("patch feedback string", "PATCH", "/{id}", None, {"feedback": "1"}, "feedback"),
    ("patch feedback bool", "PATCH", "/{id}", None, {"feedback": True}, "feedback"),
    ("patch score 101", "PATCH", "/{id}", None, {"score": 101}, "score"),
    ("patch score negative", "PATCH", "/{id}", None, {"score": -0.5}, "score"),
    ("patch metadata list", "PATCH", "/{id}", None, {"metadata": ["a"]}, "metadata"),
    ("patch metadata nested", "PATCH", "/{id}", None, {"metadata": {"a": {"b": 1}}}, "metadata"),
    ("patch metadata null value", "PATCH", "/{id}", None, {"metadata": {"a": None}}, "metadata"),
    (
        "patch metadata 6 entries",
        "PATCH",
        "/{id}",
        None,
        {"metadata": {str(i): i for i in range(6)}},
        "at most 5",
    ),
    ("patch body not an object", "PATCH", "/{id}", None, [1], "object"),
]


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "fragment"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_requests_get_400_with_a_message(emulator, method, path, params, body, fragment):
    """A malformed request is refused with 400 and a message that names what is wrong."""
    log_id = emulator.store.all_ids(emulator.account_id, emulator.gateway_id)[0]
    response = emulator.call(method, path.format(id=log_id), params=params, json=body)
    assert response.status_code == 400
    payload = response.json()
    assert payload["success"] is False and payload["result"] == {}
    assert fragment in payload["errors"][0]["message"]
    assert "ratelimit" in response.headers


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [(b"", "empty"), (b"{feedback: 1}", "not valid JSON"), (b"\xff\xfe", "not valid JSON")],
    ids=["empty", "not JSON", "not UTF-8"],
)
def test_unreadable_patch_body_gets_400(emulator, raw, fragment):
    """A PATCH whose body cannot be read as JSON is a 400 saying so."""
    log_id = emulator.store.all_ids(emulator.account_id, emulator.gateway_id)[0]
    response = emulator.call("PATCH", f"/{log_id}", content=raw)
    assert response.status_code == 400
    assert fragment in response.json()["errors"][0]["message"]


# (case id, method, path suffix, Authorization header or None, expected status, expected body)
AUTH_CASES = [
    ("no header", "GET", "", None, 403, AUTH_ERROR),
    ("unknown token", "GET", "", "Bearer not-a-token", 403, AUTH_ERROR),
    ("read token may list", "GET", "", "Bearer demo-read-token", 200, None),
    ("read token may get", "GET", "/{id}", "Bearer demo-read-token", 200, None),
    ("read token may not patch", "PATCH", "/{id}", "Bearer demo-read-token", 403, AUTH_ERROR),
    ("read token may not delete", "DELETE", "", "Bearer demo-read-token", 403, AUTH_ERROR),
    ("edit token may patch", "PATCH", "/{id}", "Bearer demo-edit-token", 200, None),
    ("scheme not Bearer", "GET", "", "Basic ZGVtbzpkZW1v", 400, MALFORMED_AUTH),
    ("Bearer without token", "GET", "", "Bearer", 400, MALFORMED_AUTH),
    ("token with a space", "GET", "", "Bearer demo read", 400, MALFORMED_AUTH),
]


@pytest.mark.parametrize(
    ("method", "path", "authorization", "status", "body"),
    [case[1:] for case in AUTH_CASES],
    ids=[case[0] for case in AUTH_CASES],
)
def test_authentication_and_scopes(emulator, method, path, authorization, status, body):
    """Tokens are checked like Cloudflare does: 403 code 10000, or 400 code 6003 for a bad header."""
    log_id = emulator.store.all_ids(emulator.account_id, emulator.gateway_id)[0]
    headers = {"Authorization": authorization} if authorization else {}
    json_body = {"feedback": 1} if method == "PATCH" else None
    response = emulator.call(
        method, path.format(id=log_id), token=None, headers=headers, json=json_body
    )
    assert response.status_code == status
    if body is not None:
        assert response.json() == body
    assert response.headers["ratelimit-policy"] == '"default";q=1200;w=300'


def test_legacy_email_and_key_headers_work_as_a_token(emulator):
    """X-Auth-Email + X-Auth-Key are accepted (the key is looked up like a token)."""
    headers = {"X-Auth-Email": "me@example.com", "X-Auth-Key": emulator.read_token}
    assert emulator.call("GET", token=None, headers=headers).status_code == 200
    only_key = emulator.call("GET", token=None, headers={"X-Auth-Key": emulator.read_token})
    assert only_key.status_code == 400 and only_key.json()["errors"][0]["code"] == 6003


@pytest.mark.parametrize(
    ("method", "suffix"), [("GET", ""), ("PATCH", ""), ("GET", "/request"), ("GET", "/response")]
)
def test_unknown_log_id_is_404_code_7002(emulator, method, suffix):
    """Any operation on an id the gateway does not hold is 404 with code 7002."""
    response = emulator.call(method, f"/01NOSUCHLOG000000000000000{suffix}", json={"feedback": 1})
    assert response.status_code == 404
    assert response.json() == NOT_FOUND


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        (
            "/client/v4/accounts/0123456789abcdef0123456789abcdef/ai-gateway/gateways/nope/logs",
            404,
            7002,
        ),
        (f"{OTHER_ACCOUNT}/demo-gateway/logs", 403, 10000),
        ("/client/v4/accounts/not-hex/ai-gateway/gateways/demo-gateway/logs", 400, 7003),
        ("/client/v4/accounts/0123456789abcdef0123456789abcdef/ai-gateway/evaluations", 404, 7003),
    ],
    ids=["unknown gateway", "other account", "malformed account id", "no such route"],
)
def test_wrong_gateway_account_or_route(emulator, path, status, code):
    """An unknown gateway is 404 7002, another account 403 10000, an unknown route 404 7003."""
    response = emulator.call("GET", path)
    assert response.status_code == status
    assert response.json()["errors"][0]["code"] == code


def test_gateway_id_outside_the_allowed_characters_is_400(emulator):
    """gateway_id must be 1-64 characters of a-z, 0-9, _ and -."""
    response = emulator.call(
        "GET", "/client/v4/accounts/0123456789abcdef0123456789abcdef/ai-gateway/gateways/Demo/logs"
    )
    assert response.status_code == 400
    assert "gateway_id" in response.json()["errors"][0]["message"]


def test_list_envelope_defaults_and_result_info(emulator):
    """List defaults to page 1, 20 per page, newest first; result_info has no total_pages."""
    response = emulator.call("GET")
    assert response.status_code == 200
    payload = response.json()
    assert payload["success"] is True
    assert payload["result_info"] == {"page": 1, "per_page": 20, "count": 20, "total_count": 240}
    stamps = [entry["created_at"] for entry in payload["result"]]
    assert stamps == sorted(stamps, reverse=True)


def test_list_entries_carry_metadata_as_a_json_string_and_feedback_fields(emulator):
    """Entries have the reference's fields; metadata is a JSON string; feedback/score are present."""
    entries = emulator.call("GET", params={"per_page": 50}).json()["result"]
    required = {
        "id",
        "created_at",
        "provider",
        "model",
        "path",
        "duration",
        "success",
        "cached",
        "tokens_in",
        "tokens_out",
        "feedback",
        "score",
    }
    for entry in entries:
        assert required <= set(entry)
        assert "request_head" not in entry
        if "metadata" in entry:
            assert isinstance(entry["metadata"], str)
            assert isinstance(json.loads(entry["metadata"]), dict)
    assert any(
        "cost" not in entry
        for entry in emulator.call(
            "GET", params={"per_page": 50, **_filters(("success", "eq", [False]))}
        ).json()["result"]
    ), "a failed request has no cost: absent, not 0"


def test_page_past_the_end_is_empty_not_an_error(emulator):
    """Asking for a page after the last one returns an empty result and the true total."""
    payload = emulator.call("GET", params={"per_page": 50, "page": 99}).json()
    assert payload["result"] == []
    assert payload["result_info"] == {"page": 99, "per_page": 50, "count": 0, "total_count": 240}


def test_get_one_adds_heads_and_sizes(emulator, emulator_logs):
    """GET one returns the entry plus request/response heads and sizes."""
    log = emulator_logs[3]
    result = emulator.call("GET", f"/{log['id']}").json()["result"]
    assert result["id"] == log["id"]
    for key in (
        "request_head",
        "request_head_complete",
        "request_size",
        "response_head",
        "response_head_complete",
        "response_size",
    ):
        assert result[key] == log[key]
    assert json.loads(result["metadata"]) == log["metadata"]


def test_request_and_response_bodies_come_without_envelope(emulator, emulator_logs):
    """/request and /response return the stored JSON bodies themselves."""
    log = emulator_logs[5]
    assert emulator.call("GET", f"/{log['id']}/request").json() == log["request_body"]
    assert emulator.call("GET", f"/{log['id']}/response").json() == log["response_body"]


def test_patch_returns_empty_result_and_changes_only_what_was_sent(emulator, emulator_logs):
    """PATCH answers success with an empty result; fields not sent keep their values."""
    log_id = emulator_logs[0]["id"]
    first = emulator.call("PATCH", f"/{log_id}", json={"feedback": -1, "score": 12.5})
    assert first.status_code == 200
    assert first.json() == {"success": True, "errors": [], "messages": [], "result": {}}
    emulator.call("PATCH", f"/{log_id}", json={"score": 70})
    result = emulator.call("GET", f"/{log_id}").json()["result"]
    assert (result["feedback"], result["score"]) == (-1, 70)


def test_patch_metadata_replaces_the_map_and_null_clears(emulator, emulator_logs):
    """metadata in a PATCH replaces the stored map (no merge); null removes it."""
    log = next(log for log in emulator_logs if log["metadata"] and len(log["metadata"]) >= 2)
    emulator.call("PATCH", f"/{log['id']}", json={"metadata": {"label": "good", "n": 2}})
    result = emulator.call("GET", f"/{log['id']}").json()["result"]
    assert json.loads(result["metadata"]) == {"label": "good", "n": 2}
    emulator.call("PATCH", f"/{log['id']}", json={"metadata": None, "feedback": None})
    result = emulator.call("GET", f"/{log['id']}").json()["result"]
    assert "metadata" not in result and result["feedback"] is None


def test_delete_by_filters_respects_limit_and_order(emulator, emulator_logs):
    """DELETE removes the first `limit` matching logs (oldest first by default)."""
    openai = sorted(
        (log for log in emulator_logs if log["provider"] == "openai"),
        key=lambda log: (log["created_at"], log["id"]),
    )
    response = emulator.call(
        "DELETE", params={"limit": 3, **_filters(("provider", "eq", ["openai"]))}
    )
    assert response.status_code == 200
    assert response.json() == {"success": True, "errors": [], "messages": []}
    remaining = set(emulator.store.all_ids(emulator.account_id, emulator.gateway_id))
    assert {log["id"] for log in openai[:3]}.isdisjoint(remaining)
    assert len(remaining) == 237


def test_rate_limit_headers_are_on_every_answer(emulator):
    """Ratelimit headers come with successes and errors alike; each token has its own count."""
    answers = [
        emulator.call("GET"),
        emulator.call("GET", "/nope"),
        emulator.call("GET", params={"per_page": "0"}),
        emulator.call("PATCH", "/nope", token=emulator.read_token, json={}),
    ]
    remaining = [a.headers["ratelimit"] for a in answers]
    assert remaining == [f'"default";r={r};t=300' for r in (1199, 1198, 1197, 1199)]
    assert all(a.headers["ratelimit-policy"] == '"default";q=1200;w=300' for a in answers)
    assert all("retry-after" not in a.headers for a in answers)
