"""Filters, ordering, search and paging return exactly the logs a user asked for.

Each case is checked against ground truth computed in Python from the seeded logs, listing every
page through the API, so a wrong SQL translation cannot hide.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.emulator.filters import FILTER_KEYS
from pipeline.emulator.timefmt import to_ms
from tests.examples import examples

Log = dict[str, Any]


def list_ids(emulator: Any, params: dict[str, Any] | None = None, per_page: int = 50) -> list[str]:
    """Every id the list endpoint returns for ``params``, page after page, in order."""
    ids: list[str] = []
    page = 1
    while True:
        response = emulator.call(
            "GET", params={**(params or {}), "per_page": per_page, "page": page}
        )
        assert response.status_code == 200, response.text
        result = response.json()["result"]
        if not result:
            return ids
        ids.extend(entry["id"] for entry in result)
        page += 1


def filt(*items: tuple[str, str, list[Any]]) -> dict[str, str]:
    return {"filters": json.dumps([{"key": k, "operator": o, "value": v} for k, o, v in items])}


def meta_values(log: Log) -> list[str]:
    out = []
    for value in (log["metadata"] or {}).values():
        out.append(("true" if value else "false") if isinstance(value, bool) else str(value))
    return out


def ms(log: Log) -> int:
    return to_ms(log["created_at"])


def tokens(log: Log) -> int:
    return (log["tokens_in"] or 0) + (log["tokens_out"] or 0)


NOON = "2026-11-20T12:00:00.000Z"
NOON_MS = to_ms(NOON)

# (case id, filters, predicate over a stored log)
CASES: list[tuple[str, dict[str, str], Callable[[Log], bool]]] = [
    (
        "provider eq",
        filt(("provider", "eq", ["anthropic"])),
        lambda g: g["provider"] == "anthropic",
    ),
    (
        "provider eq OR-ed values",
        filt(("provider", "eq", ["anthropic", "groq"])),
        lambda g: g["provider"] in ("anthropic", "groq"),
    ),
    (
        "provider neq none of",
        filt(("provider", "neq", ["openai", "anthropic"])),
        lambda g: g["provider"] not in ("openai", "anthropic"),
    ),
    ("model contains", filt(("model", "contains", ["mini"])), lambda g: "mini" in g["model"]),
    (
        "model_type eq",
        filt(("model_type", "eq", ["text-embeddings"])),
        lambda g: g["model_type"] == "text-embeddings",
    ),
    (
        "request_type eq",
        filt(("request_type", "eq", ["chat"])),
        lambda g: g["request_type"] == "chat",
    ),
    (
        "request_content_type eq",
        filt(("request_content_type", "eq", ["application/json"])),
        lambda g: g["request_content_type"] == "application/json",
    ),
    (
        "response_content_type contains",
        filt(("response_content_type", "contains", ["event"])),
        lambda g: "event" in g["response_content_type"],
    ),
    ("success false", filt(("success", "eq", [False])), lambda g: g["success"] is False),
    ("cached true as a string", filt(("cached", "eq", ["true"])), lambda g: g["cached"] is True),
    (
        "authentication neq true",
        filt(("authentication", "neq", [True])),
        lambda g: g["authentication"] is False,
    ),
    ("wholesale eq true", filt(("wholesale", "eq", [True])), lambda g: g["wholesale"] is True),
    (
        "compatibilityMode eq true",
        filt(("compatibilityMode", "eq", [True])),
        lambda g: g["compatibilityMode"] is True,
    ),
    (
        "cost gt (absent cost never matches)",
        filt(("cost", "gt", [0.001])),
        lambda g: g.get("cost") is not None and g["cost"] > 0.001,
    ),
    ("cost eq null", filt(("cost", "eq", [None])), lambda g: g.get("cost") is None),
    ("tokens lt", filt(("tokens", "lt", [200])), lambda g: tokens(g) < 200),
    (
        "tokens_in gt",
        filt(("tokens_in", "gt", [300])),
        lambda g: g["tokens_in"] is not None and g["tokens_in"] > 300,
    ),
    (
        "tokens_out lt OR-ed",
        filt(("tokens_out", "lt", [50, 10])),
        lambda g: g["tokens_out"] is not None and g["tokens_out"] < 50,
    ),
    (
        "duration gt and lt",
        filt(("duration", "gt", [500]), ("duration", "lt", [2000])),
        lambda g: 500 < g["duration"] < 2000,
    ),
    (
        "duration as numeric string",
        filt(("duration", "gt", ["5000"])),
        lambda g: g["duration"] > 5000,
    ),
    ("feedback eq 1", filt(("feedback", "eq", [1])), lambda g: g["feedback"] == 1),
    ("feedback neq 1", filt(("feedback", "neq", [1])), lambda g: g["feedback"] != 1),
    ("created_at gt Z string", filt(("created_at", "gt", [NOON])), lambda g: ms(g) > NOON_MS),
    (
        "created_at lt with offset",
        filt(("created_at", "lt", ["2026-11-20T13:00:00+01:00"])),
        lambda g: ms(g) < NOON_MS,
    ),
    (
        "created_at bare date",
        filt(("created_at", "gt", ["2026-11-21"])),
        lambda g: g["created_at"] >= "2026-11-21",
    ),
    (
        "created_at contains hour",
        filt(("created_at", "contains", ["T09:"])),
        lambda g: "T09:" in g["created_at"],
    ),
    ("event_id contains", filt(("event_id", "contains", ["ab"])), lambda g: "ab" in g["event_id"]),
    ("id contains", filt(("id", "contains", ["Z"])), lambda g: "Z" in g["id"]),
    (
        "dlp_action eq null",
        filt(("dlp_action", "neq", [None])),
        lambda g: g["dlp_action"] is not None,
    ),
    (
        "user_agent contains",
        filt(("user_agent", "contains", ["python"])),
        lambda g: "python" in g["user_agent"],
    ),
    (
        "metadata.key eq",
        filt(("metadata.key", "eq", ["turn"])),
        lambda g: "turn" in (g["metadata"] or {}),
    ),
    (
        "metadata.key neq",
        filt(("metadata.key", "neq", ["conversation"])),
        lambda g: "conversation" not in (g["metadata"] or {}),
    ),
    (
        "metadata.value eq",
        filt(("metadata.value", "eq", ["support-bot"])),
        lambda g: "support-bot" in meta_values(g),
    ),
    (
        "metadata.value eq number",
        filt(("metadata.value", "eq", [3])),
        lambda g: "3" in meta_values(g),
    ),
    (
        "metadata.value contains",
        filt(("metadata.value", "contains", ["u_00"])),
        lambda g: any("u_00" in v for v in meta_values(g)),
    ),
    (
        "metadata.value gt number",
        filt(("metadata.value", "gt", [6])),
        lambda g: any(
            isinstance(v, int) and not isinstance(v, bool) and v > 6
            for v in (g["metadata"] or {}).values()
        ),
    ),
    (
        "AND of three keys",
        filt(
            ("provider", "eq", ["openai"]),
            ("success", "eq", [True]),
            ("metadata.key", "eq", ["app"]),
        ),
        lambda g: g["provider"] == "openai" and g["success"] and "app" in (g["metadata"] or {}),
    ),
    ("empty array: no filter", {"filters": "[]"}, lambda g: True),
    (
        "SDK dotted form is ignored",
        {"filters.key": "provider", "filters.operator": "eq", "filters.value": "groq"},
        lambda g: True,
    ),
    (
        "search over metadata",
        {"search": "code-assist"},
        lambda g: "code-assist" in json.dumps(g["metadata"] or {}),
    ),
    (
        "deprecated flat params",
        {"provider": "openai", "min_duration": "1000"},
        lambda g: g["provider"] == "openai" and g["duration"] >= 1000,
    ),
    (
        "deprecated date range",
        {"start_date": NOON, "end_date": "2026-11-21T00:00:00Z"},
        lambda g: NOON_MS <= ms(g) <= to_ms("2026-11-21T00:00:00Z"),
    ),
]


@pytest.mark.parametrize(("params", "predicate"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_filters_match_exactly_the_expected_logs(emulator, emulator_logs, params, predicate):
    """Listing with filters returns every matching log once and nothing else."""
    expected = {log["id"] for log in emulator_logs if predicate(log)}
    assert expected, "a case that matches nothing proves little"
    got = list_ids(emulator, params)
    assert len(got) == len(set(got)), "no duplicates across pages"
    assert set(got) == expected


def test_id_filter_picks_exactly_those_logs(emulator, emulator_logs):
    """id eq with several values returns those logs; id neq returns all the others."""
    wanted = [emulator_logs[1]["id"], emulator_logs[200]["id"]]
    assert sorted(list_ids(emulator, filt(("id", "eq", wanted)))) == sorted(wanted)
    assert len(list_ids(emulator, filt(("id", "neq", wanted)))) == len(emulator_logs) - 2


def test_every_reference_filter_key_is_covered_by_a_case():
    """The 24 filter keys of the reference all have a semantic test above."""
    covered = {
        item["key"]
        for _, params, _ in CASES
        if "filters" in params
        for item in json.loads(params["filters"])
    }
    assert covered == set(FILTER_KEYS)
    assert len(FILTER_KEYS) == 24


ORDER_KEYS: dict[str, Callable[[Log], Any]] = {
    "created_at": lambda g: 0,
    "provider": lambda g: g["provider"],
    "model": lambda g: g["model"],
    "model_type": lambda g: g["model_type"],
    "success": lambda g: g["success"],
    "cached": lambda g: g["cached"],
}


@pytest.mark.parametrize("direction", ["asc", "desc"])
@pytest.mark.parametrize("order_by", list(ORDER_KEYS))
def test_ordering_is_total_and_stable(emulator, emulator_logs, order_by, direction):
    """Each order_by sorts by that column, then created_at, then id, all in the same direction."""
    key = ORDER_KEYS[order_by]
    expected = [
        log["id"]
        for log in sorted(
            emulator_logs,
            key=lambda g: (key(g), ms(g), g["id"]),
            reverse=direction == "desc",
        )
    ]
    params = {"order_by": order_by, "order_by_direction": direction}
    assert list_ids(emulator, params, per_page=37) == expected


def test_ties_on_created_at_page_deterministically(emulator, emulator_logs):
    """Logs sharing one created_at millisecond keep one order across pages (broken by id)."""
    stamps = [log["created_at"] for log in emulator_logs]
    assert len(stamps) > len(set(stamps)), "the seeded logs contain ties"
    first = list_ids(emulator, per_page=7)
    assert first == list_ids(emulator, per_page=7)
    assert sorted(first) == sorted(log["id"] for log in emulator_logs)


def test_meta_info_adds_min_max_aggregates_of_the_filtered_logs(emulator, emulator_logs):
    """meta_info=true adds min/max of cost, duration and tokens over the matching logs."""
    params = {"meta_info": "true", **filt(("provider", "eq", ["openai"]))}
    info = emulator.call("GET", params=params).json()["result_info"]
    chosen = [log for log in emulator_logs if log["provider"] == "openai"]
    costs = [log["cost"] for log in chosen if log.get("cost") is not None]
    assert info["total_count"] == len(chosen)
    assert (info["min_cost"], info["max_cost"]) == pytest.approx((min(costs), max(costs)))
    assert info["min_duration"] == min(log["duration"] for log in chosen)
    assert info["max_duration"] == max(log["duration"] for log in chosen)
    assert info["max_total_tokens"] == max(tokens(log) for log in chosen)
    assert "min_cost" not in emulator.call("GET").json()["result_info"]


def test_a_created_at_window_splits_ties_exactly(emulator, emulator_logs):
    """gt/lt on created_at compare milliseconds: adjacent windows cover each log exactly once."""
    tied = next(
        log["created_at"]
        for i, log in enumerate(emulator_logs[1:], 1)
        if log["created_at"] == emulator_logs[i - 1]["created_at"]
    )
    tied_ms = to_ms(tied)
    before = list_ids(emulator, filt(("created_at", "lt", [tied])))
    at = list_ids(emulator, filt(("created_at", "eq", [tied])))
    after = list_ids(emulator, filt(("created_at", "gt", [tied])))
    assert len(at) >= 2
    assert set(before) | set(at) | set(after) == {log["id"] for log in emulator_logs}
    assert len(before) + len(at) + len(after) == len(emulator_logs)
    assert {log["id"] for log in emulator_logs if ms(log) == tied_ms} == set(at)


@settings(
    max_examples=examples(full=40, fast=10),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    per_page=st.integers(1, 50),
    order_by=st.sampled_from(list(ORDER_KEYS)),
    direction=st.sampled_from(["asc", "desc"]),
    provider=st.none() | st.sampled_from(["openai", "anthropic", "groq", "workers-ai"]),
)
def test_paging_covers_every_id_exactly_once(
    emulator, emulator_logs, per_page, order_by, direction, provider
):
    """Whatever per_page, ordering and filter, walking the pages yields each matching id once."""
    emulator.control.reset()  # listing is read-only; only the rate-limit count must start afresh
    params: dict[str, Any] = {"order_by": order_by, "order_by_direction": direction}
    if provider:
        params.update(filt(("provider", "eq", [provider])))
    ids = list_ids(emulator, params, per_page=per_page)
    expected = {log["id"] for log in emulator_logs if provider in (None, log["provider"])}
    assert len(ids) == len(set(ids))
    assert set(ids) == expected


def test_timestamps_parse_like_the_api(emulator):
    """Filter timestamps accept Z, offsets, fractions and bare dates."""
    for text in (
        "2026-11-20T12:00:00Z",
        "2026-11-20T12:00:00.000Z",
        "2026-11-20T13:00:00+01:00",
        "2026-11-20T12:00:00.000000+00:00",
    ):
        assert to_ms(text) == NOON_MS, text
    assert to_ms(datetime.fromisoformat("2026-11-20T12:00:00+00:00")) == NOON_MS
