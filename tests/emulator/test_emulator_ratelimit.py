"""The emulator rate-limits like Cloudflare: per token, sliding window, 429 code 971, block period.

Time is the injected ManualClock: nothing sleeps.
"""

from __future__ import annotations

import pytest

from pipeline.emulator.ratelimit import SlidingWindowLimiter, headers

RATE_LIMITED = {
    "success": False,
    "errors": [{"code": 971, "message": "Please wait and consider throttling your request speed"}],
}


def test_going_over_the_quota_is_a_429_with_retry_after(emulator):
    """Request quota+1 gets 429 code 971, Retry-After in whole seconds and r=0."""
    emulator.control.configure(rate_limit_requests=5, rate_limit_window=60.0)
    statuses = [emulator.call("GET", params={"per_page": 1}).status_code for _ in range(5)]
    assert statuses == [200] * 5
    over = emulator.call("GET")
    assert over.status_code == 429
    assert over.json() == RATE_LIMITED
    assert over.headers["retry-after"] == "60"
    assert over.headers["ratelimit"] == '"default";r=0;t=60'
    assert over.headers["ratelimit-policy"] == '"default";q=5;w=60'


def test_the_block_refuses_every_call_until_it_ends(emulator):
    """After going over, every call is refused for block_seconds, then the token works again."""
    emulator.control.configure(rate_limit_requests=2, rate_limit_window=10.0, block_seconds=300.0)
    for _ in range(2):
        emulator.call("GET")
    assert emulator.call("GET").status_code == 429
    emulator.clock.advance(299.0)
    blocked = emulator.call("GET", "/any")
    assert blocked.status_code == 429
    assert blocked.headers["retry-after"] == "1"
    emulator.clock.advance(1.0)
    again = emulator.call("GET")
    assert again.status_code == 200
    assert again.headers["ratelimit"] == '"default";r=1;t=10'


def test_the_window_slides_request_by_request(emulator):
    """A request frees its slot exactly `window` seconds after it was made."""
    emulator.control.configure(rate_limit_requests=3, rate_limit_window=10.0, block_seconds=0.0)
    for _ in range(3):
        emulator.call("GET")
        emulator.clock.advance(2.0)
    refused = emulator.call("GET")  # t=6: the first request (t=0) still counts
    assert refused.status_code == 429 and refused.headers["retry-after"] == "4"
    emulator.clock.advance(4.0)  # t=10: the first slot is free again, the other two are not
    allowed = emulator.call("GET")
    assert allowed.status_code == 200
    assert allowed.headers["ratelimit"] == '"default";r=0;t=2'


def test_each_token_has_its_own_budget(emulator):
    """Exhausting the edit token leaves the read token untouched."""
    emulator.control.configure(rate_limit_requests=1, rate_limit_window=60.0)
    emulator.call("GET", token=emulator.edit_token)
    assert emulator.call("GET", token=emulator.edit_token).status_code == 429
    assert emulator.call("GET", token=emulator.read_token).status_code == 200


def test_every_request_counts_even_refused_ones(emulator):
    """403s and 400s spend the budget too, so a client cannot waste requests for free."""
    emulator.control.configure(rate_limit_requests=3, rate_limit_window=60.0)
    emulator.call("PATCH", "/x", token=emulator.edit_token, json={"feedback": 5})  # 400
    emulator.call("GET", "/missing")  # 404
    emulator.call("GET", params={"per_page": 0})  # 400
    assert emulator.call("GET").status_code == 429


def test_a_blocked_token_is_refused_before_anything_else(emulator):
    """While blocked, even a malformed request or an unknown id gets the 429."""
    emulator.control.configure(rate_limit_requests=1, rate_limit_window=60.0)
    emulator.call("GET")
    emulator.call("GET")
    for path in ("", "/nope", "/nope/request"):
        assert emulator.call("GET", path).status_code == 429
    assert emulator.control.snapshot()["rate_limited"] == 4


def test_reset_forgets_the_rate_limit_state(emulator):
    """POST /__emulator/reset unblocks tokens, e.g. between test phases."""
    emulator.control.configure(rate_limit_requests=1)
    emulator.call("GET")
    assert emulator.call("GET").status_code == 429
    assert emulator.call("POST", "/__emulator/reset", token=None).status_code == 200
    assert emulator.call("GET").status_code == 200


@pytest.mark.parametrize(
    ("window", "expected"), [(300.0, '"default";q=10;w=300'), (2.5, '"default";q=10;w=2.5')]
)
def test_policy_header_shows_quota_and_window(window, expected):
    """Ratelimit-Policy shows the quota and the window (whole seconds when whole)."""
    limiter = SlidingWindowLimiter(lambda: 0.0)
    decision = limiter.hit("t", 10, window, window)
    assert headers(decision, 10, window)["ratelimit-policy"] == expected
