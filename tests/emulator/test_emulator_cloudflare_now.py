"""The emulator follows Cloudflare as it is since mid-2026 (issue 12, item 6).

UUIDv7 ids from 2026-10-08, a second limiter (429 code 10040), the per-IP limit, both header
families, list entries without feedback, and the edge shapes as Cloudflare answers them. Time is
the injected ManualClock: nothing sleeps.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest

from pipeline.emulator.app import create_app
from pipeline.emulator.seed import generate_logs
from pipeline.emulator.settings import DEFAULT_ACCOUNT_ID, DEFAULT_GATEWAY_ID, EmulatorSettings
from pipeline.emulator.store import EmulatorStore
from pipeline.emulator.timefmt import ms_to_iso
from tests.conftest import InProcessEmulator, ManualClock

ULID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
UUID7_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")


def _mixed_logs() -> list[dict[str, object]]:
    around = generate_logs(
        60, seed=5, start="2026-10-06T00:00:00Z", end="2026-10-10T00:00:00Z", ids="cloudflare"
    )
    hexed = generate_logs(
        10, seed=6, start="2026-10-06T00:00:00Z", end="2026-10-10T00:00:00Z", ids="hex64"
    )
    return around + hexed


@pytest.fixture
def mixed() -> InProcessEmulator:
    """An in-process emulator holding ULID, UUIDv7 and 64-hex ids."""
    store = EmulatorStore()
    store.insert_logs(DEFAULT_ACCOUNT_ID, DEFAULT_GATEWAY_ID, _mixed_logs())
    clock = ManualClock()
    app = create_app(EmulatorSettings(), store, clock, sleep=clock.sleep)
    return InProcessEmulator(app, store, clock)


# -- 1. log ids ---------------------------------------------------------------------------------


def test_logs_from_2026_10_08_get_uuid7_ids_and_older_ones_ulids():
    """With Cloudflare's naming, logs from 2026-10-08 have lowercase UUIDv7 ids, older ones ULIDs."""
    logs = generate_logs(
        80, seed=1, start="2026-10-06T00:00:00Z", end="2026-10-10T00:00:00Z", ids="cloudflare"
    )
    old = [log for log in logs if str(log["created_at"]) < "2026-10-08"]
    new = [log for log in logs if str(log["created_at"]) >= "2026-10-08"]
    assert old and new
    assert all(ULID_RE.match(str(log["id"])) for log in old)
    for log in new:
        assert UUID7_RE.match(str(log["id"])) and len(str(log["id"])) == 36
        parsed = uuid.UUID(str(log["id"]))
        assert parsed.version == 7
        created_ms = int(parsed.hex[:12], 16)
        assert ms_to_iso(created_ms) == log["created_at"], "the id carries the creation time"
    new_ids = [str(log["id"]) for log in new]
    assert new_ids == sorted(new_ids), "UUIDv7 ids are time-ordered"


def test_the_id_format_changes_only_the_ids():
    """Generating with another id format gives the same logs apart from their ids."""
    kwargs = {"seed": 9, "start": "2026-11-01T00:00:00Z", "end": "2026-11-02T00:00:00Z"}
    plain = generate_logs(30, **kwargs)  # type: ignore[arg-type]
    for ids in ("cloudflare", "uuid7", "hex64"):
        other = generate_logs(30, ids=ids, **kwargs)  # type: ignore[arg-type]
        assert [{**a, "id": None} for a in plain] == [{**b, "id": None} for b in other]
    assert all(ULID_RE.match(str(log["id"])) for log in plain), "the default stays ULID"


def test_64_hex_ids_on_request():
    """ids="hex64" names every log with 64 lowercase hex digits, distinct and reproducible."""
    kwargs = {"seed": 2, "start": "2026-11-01T00:00:00Z", "end": "2026-11-02T00:00:00Z"}
    first = [log["id"] for log in generate_logs(50, ids="hex64", **kwargs)]  # type: ignore[arg-type]
    again = [log["id"] for log in generate_logs(50, ids="hex64", **kwargs)]  # type: ignore[arg-type]
    assert first == again and len(set(first)) == 50
    assert all(HEX64_RE.match(str(i)) for i in first)


def test_an_unknown_id_format_is_refused():
    """Asking for an id format that does not exist is a clear ValueError."""
    with pytest.raises(ValueError, match="id format"):
        generate_logs(1, seed=1, start="2026-11-01", end="2026-11-02", ids="guid")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log_ids"):
        EmulatorSettings.of(log_ids="guid")


def test_get_and_patch_work_for_every_id_format(mixed):
    """GET and PATCH find a log by its ULID, UUIDv7 or 64-hex id alike."""
    ids = mixed.store.all_ids(mixed.account_id, mixed.gateway_id)
    samples = [
        next(i for i in ids if ULID_RE.match(i)),
        next(i for i in ids if UUID7_RE.match(i)),
        next(i for i in ids if HEX64_RE.match(i)),
    ]
    for log_id in samples:
        assert mixed.call("PATCH", f"/{log_id}", json={"feedback": 1}).status_code == 200
        got = mixed.call("GET", f"/{log_id}").json()["result"]
        assert (got["id"], got["feedback"]) == (log_id, 1)
        filtered = mixed.call(
            "GET",
            params={"filters": json.dumps([{"key": "id", "operator": "eq", "value": [log_id]}])},
        ).json()
        assert [e["id"] for e in filtered["result"]] == [log_id]


def test_churned_logs_are_named_as_cloudflare_names_them(emulator):
    """Logs the emulator inserts itself (churn) after 2026-10-08 get UUIDv7 ids by default."""
    emulator.control.configure(churn_insert_per_list=5)
    emulator.call("GET")
    inserted = emulator.control.churned()["inserted"]
    assert len(inserted) == 5 and all(UUID7_RE.match(i) for i in inserted)
    emulator.control.configure(log_ids="ulid")
    emulator.call("GET")
    later = emulator.control.churned()["inserted"][5:]
    assert len(later) == 5 and all(ULID_RE.match(i) for i in later)


# -- 2. the second limiter ----------------------------------------------------------------------


def test_the_account_limiter_answers_10040_while_ratelimit_shows_plenty(emulator):
    """Over the per-account limiter: 429 code 10040, Retry-After 60, Ratelimit still far from 0."""
    emulator.control.configure(account_limit_requests=3, account_limit_window=10.0)
    assert [emulator.call("GET").status_code for _ in range(3)] == [200] * 3
    over = emulator.call("GET")
    assert over.status_code == 429
    assert over.json()["errors"][0]["code"] == 10040
    assert over.headers["retry-after"] == "60"
    remaining = int(over.headers["ratelimit"].split("r=")[1].split(";")[0])
    assert remaining > 1000
    stats = emulator.control.snapshot()
    assert stats["rate_limited_by"] == {"token": 0, "account": 1, "ip": 0}
    assert stats["rate_limited"] == 0
    emulator.clock.advance(10.0)
    assert emulator.call("GET").status_code == 200


def test_the_account_limiter_is_off_by_default(emulator):
    """Without configuring it, many quick calls never see a 10040."""
    assert {emulator.call("GET", params={"per_page": 1}).status_code for _ in range(30)} == {200}


def test_the_account_limiter_retry_after_is_configurable(emulator):
    """account_limit_retry_after sets the Retry-After the 10040 answer carries."""
    emulator.control.configure(account_limit_requests=1, account_limit_retry_after=7)
    emulator.call("GET")
    assert emulator.call("GET").headers["retry-after"] == "7"


# -- 3. the per-IP limit ------------------------------------------------------------------------


def test_the_per_ip_limit_is_200_a_second_with_its_own_code(emulator):
    """Over 200 requests in one second from one IP: 429 code 1015; the next second works again."""
    emulator.control.configure(ip_limit_per_second=200)
    assert {emulator.call("GET", params={"per_page": 1}).status_code for _ in range(200)} == {200}
    over = emulator.call("GET")
    assert over.status_code == 429
    assert over.json()["errors"][0]["code"] == 1015
    assert over.headers["retry-after"] == "1"
    assert emulator.control.snapshot()["rate_limited_by"]["ip"] == 1
    emulator.clock.advance(1.0)
    assert emulator.call("GET").status_code == 200


def test_the_per_ip_limit_counts_every_token_of_that_ip(emulator):
    """The per-IP limit is shared by all tokens calling from one address."""
    emulator.control.configure(ip_limit_per_second=2)
    emulator.call("GET")
    emulator.call("GET", token=emulator.read_token)
    assert emulator.call("GET", token=emulator.read_token).status_code == 429


# -- 4. headers ---------------------------------------------------------------------------------


def test_legacy_x_ratelimit_headers_on_request(emulator):
    """legacy_ratelimit_headers adds x-ratelimit-limit, -remaining and -reset to every answer."""
    plain = emulator.call("GET")
    assert "x-ratelimit-limit" not in plain.headers
    emulator.control.configure(legacy_ratelimit_headers=True, rate_limit_requests=10)
    emulator.control.reset()
    answer = emulator.call("GET")
    assert answer.headers["x-ratelimit-limit"] == "10"
    assert answer.headers["x-ratelimit-remaining"] == "9"
    assert answer.headers["x-ratelimit-reset"] == "300"
    assert answer.headers["ratelimit"] == '"default";r=9;t=300'


def test_the_policy_name_is_configurable(emulator):
    """ratelimit_policy_name="burst" names the policy in Ratelimit and Ratelimit-Policy."""
    emulator.control.configure(ratelimit_policy_name="burst", rate_limit_requests=1200)
    answer = emulator.call("GET")
    assert answer.headers["ratelimit-policy"] == '"burst";q=1200;w=300'
    assert answer.headers["ratelimit"].startswith('"burst";r=')
    with pytest.raises(ValueError, match="ratelimit_policy_name"):
        emulator.control.configure(ratelimit_policy_name='bad"name')


# -- 5. list entries without feedback -----------------------------------------------------------


def test_list_entries_without_feedback_and_score_on_request(emulator, emulator_logs):
    """list_feedback=false leaves feedback and score out of list entries; GET one still has them."""
    with_feedback = emulator.call("GET", params={"per_page": 50}).json()["result"]
    assert all("feedback" in e and "score" in e for e in with_feedback)
    emulator.control.configure(list_feedback=False)
    entries = emulator.call("GET", params={"per_page": 50}).json()["result"]
    assert entries and all("feedback" not in e and "score" not in e for e in entries)
    assert [e["id"] for e in entries] == [e["id"] for e in with_feedback]
    assert {k for e in entries for k in e} >= {"id", "created_at", "provider", "metadata"}
    detail = emulator.call("GET", f"/{entries[0]['id']}").json()["result"]
    assert "feedback" in detail and "score" in detail


def test_a_boolean_setting_refuses_other_values(emulator):
    """Boolean settings take true or false only, at runtime too."""
    with pytest.raises(ValueError, match="true or false"):
        emulator.control.configure(list_feedback=0)


# -- 6. edge shapes -----------------------------------------------------------------------------


def test_patch_with_an_unknown_field_is_accepted_and_the_field_ignored(emulator, emulator_logs):
    """A PATCH with an extra field succeeds; the known fields apply, the unknown one is dropped."""
    log_id = emulator_logs[3]["id"]
    answer = emulator.call("PATCH", f"/{log_id}", json={"feedback": -1, "rating": 5})
    assert answer.status_code == 200
    result = emulator.call("GET", f"/{log_id}").json()["result"]
    assert result["feedback"] == -1 and "rating" not in result


def test_another_account_is_403_code_10000(emulator):
    """A well-formed account id the token cannot see is 403 code 10000, not 404."""
    path = (
        "/client/v4/accounts/ffffffffffffffffffffffffffffffff/ai-gateway/gateways/demo-gateway/logs"
    )
    answer = emulator.call("GET", path)
    assert answer.status_code == 403
    assert answer.json() == {
        "success": False,
        "errors": [{"code": 10000, "message": "Authentication error"}],
    }


def test_an_unknown_route_is_404_code_7003(emulator):
    """A path the API does not have is 404 with code 7003."""
    answer = emulator.call("GET", "/client/v4/accounts/0123456789abcdef0123456789abcdef/nothing")
    assert answer.status_code == 404
    assert answer.json()["errors"][0]["code"] == 7003


@pytest.mark.parametrize(
    ("method", "suffix"), [("POST", ""), ("PUT", ""), ("POST", "/{id}"), ("POST", "/{id}/request")]
)
def test_a_method_the_route_lacks_is_405(emulator, emulator_logs, method, suffix):
    """POST on /logs (or another method a route lacks) is 405, and changes nothing."""
    before = emulator.store.count(emulator.account_id, emulator.gateway_id)
    answer = emulator.call(method, suffix.format(id=emulator_logs[0]["id"]), json={"feedback": 1})
    assert answer.status_code == 405
    assert answer.json()["success"] is False
    assert emulator.store.count(emulator.account_id, emulator.gateway_id) == before


def test_a_trailing_slash_lists_like_logs(emulator):
    """GET /logs/ answers exactly like GET /logs."""
    plain = emulator.call("GET", params={"per_page": 5})
    slashed = emulator.call("GET", "/", params={"per_page": 5})
    assert slashed.status_code == 200
    assert slashed.json() == plain.json()


def test_success_envelopes_carry_empty_errors_and_messages(emulator, emulator_logs):
    """List, GET one, PATCH and DELETE answers all carry errors: [] and messages: []."""
    log_id = emulator_logs[0]["id"]
    filters = json.dumps([{"key": "id", "operator": "eq", "value": [emulator_logs[1]["id"]]}])
    answers = [
        emulator.call("GET"),
        emulator.call("GET", f"/{log_id}"),
        emulator.call("PATCH", f"/{log_id}", json={"feedback": 1}),
        emulator.call("DELETE", params={"filters": filters}),
    ]
    for answer in answers:
        body = answer.json()
        assert answer.status_code == 200
        assert (body["success"], body["errors"], body["messages"]) == (True, [], [])


@pytest.mark.parametrize("params", [{}, {"filters": "[]"}, {"limit": "5"}, {"filters": ""}])
def test_a_delete_without_filters_is_refused_and_deletes_nothing(emulator, params):
    """A DELETE with no filters is a 400 that names filters, and every log stays."""
    before = emulator.store.count(emulator.account_id, emulator.gateway_id)
    answer = emulator.call("DELETE", params=params)
    assert answer.status_code == 400
    assert "filters" in answer.json()["errors"][0]["message"]
    assert emulator.store.count(emulator.account_id, emulator.gateway_id) == before == 240


def test_a_delete_without_filters_can_be_allowed(emulator):
    """delete_without_filters=true deletes up to limit logs without filters, as the spec allows."""
    emulator.control.configure(delete_without_filters=True)
    assert emulator.call("DELETE", params={"limit": "5"}).status_code == 200
    assert emulator.store.count(emulator.account_id, emulator.gateway_id) == 235


def test_the_new_settings_default_to_todays_behaviour():
    """Defaults: no second limiter, no per-IP limit, no legacy headers, "default" policy, feedback in lists."""
    settings = EmulatorSettings()
    assert settings.account_limit_requests == 0 and settings.ip_limit_per_second == 0
    assert settings.legacy_ratelimit_headers is False
    assert settings.ratelimit_policy_name == "default"
    assert settings.list_feedback is True and settings.delete_without_filters is False
    assert settings.log_ids == "cloudflare"


def test_the_new_settings_are_set_with_of_and_shown_by_the_admin_config(emulator):
    """EmulatorSettings.of(...) sets the new options; GET /__emulator/config lists them."""
    settings = EmulatorSettings.of(list_feedback=False, rate_limit_requests=9)
    assert (settings.list_feedback, settings.rate_limit_requests) == (False, 9)
    assert settings.updated({"seed": 3}).list_feedback is False, "other changes keep them"
    assert settings != EmulatorSettings.of(rate_limit_requests=9)
    emulator.control.configure(ratelimit_policy_name="burst")
    config = emulator.call("GET", "/__emulator/config", token=None).json()
    assert config["ratelimit_policy_name"] == "burst" and config["list_feedback"] is True
    assert config["log_ids"] == "cloudflare" and config["account_limit_requests"] == 0
