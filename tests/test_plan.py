"""Plan: what will be written, to which log, and why — before a single PATCH is sent."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import JobConfig, load_job
from pipeline.gateway.client import LogsClient
from pipeline.gateway.retry import NO_WAIT
from pipeline.plan import (
    METADATA_MAX_ENTRIES,
    PLAN_SCHEMA,
    build_bodies,
    decide,
    lookup_logs,
    plan,
    stamp_metadata,
)
from pipeline.schemas import LOG_SCHEMA
from pipeline.state import store
from pipeline.window import Window
from tests.examples import examples

ACCOUNT = "0123456789abcdef0123456789abcdef"
WINDOW = Window(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))


def chosen_frame(rows: list[tuple[str, int | None, float | None, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"log_id": i, "feedback": f, "score": s, "source": src, "reason": "r"}
            for i, f, s, src in rows
        ],
        schema={
            "log_id": pl.String,
            "feedback": pl.Int8,
            "score": pl.Float64,
            "source": pl.String,
            "reason": pl.String,
        },
    )


def current_frame(rows: list[tuple[str, int | None, float | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"id": i, "feedback": f, "score": s, "metadata": m, "found_in": "extract"}
            for i, f, s, m in rows
        ],
        schema={
            "id": pl.String,
            "feedback": pl.Int8,
            "score": pl.Float64,
            "metadata": pl.String,
            "found_in": pl.String,
        },
    )


def actions(chosen: pl.DataFrame, current: pl.DataFrame, **kw: Any) -> dict[str, str]:
    kw.setdefault("overwrite_existing", ("csv",))
    kw.setdefault("precedence", ("csv", "external", "rules"))
    out = decide(chosen, current, **kw)
    return dict(out.select("log_id", "action").iter_rows())


def test_each_label_gets_the_action_a_user_expects() -> None:
    """New feedback is patched, equal feedback is left alone, missing logs are reported."""
    chosen = chosen_frame(
        [
            ("new", 1, None, "rule:slow"),
            ("same", -1, None, "rule:slow"),
            ("zero", 1, None, "rule:slow"),
            ("gone", 1, None, "csv:a.csv"),
            ("score-only", None, 80.0, "external:judge"),
        ]
    )
    current = current_frame(
        [
            ("new", None, None, None),
            ("same", -1, None, None),
            ("zero", 0, None, None),
            ("score-only", 1, 80.0, None),
        ]
    )
    assert actions(chosen, current) == {
        "new": "patch",
        "same": "unchanged",
        "zero": "patch",  # 0 means "not evaluated": nothing to protect
        "gone": "not_found",
        "score-only": "unchanged",
    }


def test_rules_do_not_overwrite_someone_elses_feedback_but_csv_does() -> None:
    """Feedback a person left in the dashboard survives a rule; an analyst's CSV replaces it."""
    chosen = chosen_frame(
        [("a", -1, None, "rule:slow"), ("b", -1, None, "csv:x.csv"), ("c", 1, 10.0, "external:j")]
    )
    current = current_frame([("a", 1, None, None), ("b", 1, None, None), ("c", 1, 50.0, None)])
    assert actions(chosen, current) == {"a": "keep_existing", "b": "patch", "c": "keep_existing"}
    assert actions(chosen, current, overwrite_existing=("csv", "rules"))["a"] == "patch"


def test_a_source_may_correct_what_this_tool_stamped_earlier() -> None:
    """With stamps, a rule fixes its own earlier label, but never an analyst's."""
    by_rule = json.dumps({"label_source": "rule:slow", "label_run": "r1"})
    by_csv = json.dumps({"label_source": "csv:a.csv", "label_run": "r1"})
    chosen = chosen_frame([("mine", -1, None, "rule:slow"), ("theirs", -1, None, "rule:slow")])
    current = current_frame([("mine", 1, None, by_rule), ("theirs", 1, None, by_csv)])
    assert actions(chosen, current) == {"mine": "patch", "theirs": "keep_existing"}


def test_body_holds_only_the_fields_that_change() -> None:
    """A score-only change sends only the score; the hash is the same for the same change."""
    chosen = chosen_frame([("a", 1, 70.0, "csv:x.csv"), ("b", 1, 70.0, "csv:x.csv")])
    current = current_frame([("a", 1, None, None), ("b", 1, None, None)])
    decided = decide(chosen, current, overwrite_existing=("csv",), precedence=("csv",))
    out = build_bodies(decided, stamp=False, run_id="run-1")
    bodies = dict(out.select("log_id", "body").iter_rows())
    assert json.loads(bodies["a"]) == {"score": 70.0}
    hashes = out.get_column("body_hash").to_list()
    assert hashes[0] == hashes[1]
    assert out.get_column("desired_feedback").to_list() == [1, 1]


def test_stamp_keeps_existing_metadata_and_is_skipped_past_five_entries() -> None:
    """Stamping never drops a key a log already has, and never sends more than 5 entries."""
    small = json.dumps({"user": "u1", "app": "chat"})
    full = json.dumps({f"k{i}": i for i in range(4)})
    chosen = chosen_frame([("a", 1, None, "csv:x.csv"), ("b", 1, None, "csv:x.csv")])
    current = current_frame([("a", None, None, small), ("b", None, None, full)])
    decided = decide(chosen, current, overwrite_existing=("csv",), precedence=("csv",))
    out = build_bodies(decided, stamp=True, run_id="run-1")
    bodies = {k: json.loads(v) for k, v in out.select("log_id", "body").iter_rows()}
    assert bodies["a"]["metadata"] == {
        "user": "u1",
        "app": "chat",
        "label_source": "csv:x.csv",
        "label_run": "run-1",
    }
    assert "metadata" not in bodies["b"]
    assert out.filter(pl.col("stamp_skipped")).get_column("log_id").to_list() == ["b"]


metadata_maps = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.one_of(st.text(max_size=8), st.integers(-5, 5), st.booleans()),
    max_size=7,
)


@given(metadata_maps, st.sampled_from(["csv:a.csv", "rule:x", "external:j"]))
def test_stamped_map_keeps_every_key_and_stays_within_five(
    existing: dict[str, Any], source: str
) -> None:
    """Property: a stamp is either skipped or a superset of the existing map with ≤ 5 entries."""
    merged = stamp_metadata(json.dumps(existing), source, "run-9")
    if merged is None:
        assert len({**existing, "label_source": 1, "label_run": 1}) > METADATA_MAX_ENTRIES
    else:
        assert len(merged) <= METADATA_MAX_ENTRIES
        for key, value in existing.items():
            if key not in ("label_source", "label_run"):
                assert merged[key] == value
        assert merged["label_source"] == source


feedback = st.one_of(st.none(), st.sampled_from([-1, 1]))
current_feedback = st.one_of(st.none(), st.sampled_from([-1, 0, 1]))
scores = st.one_of(st.none(), st.sampled_from([0.0, 50.0, 100.0]))


@settings(max_examples=examples(full=200, fast=50))
@given(
    st.lists(
        st.tuples(feedback, scores, current_feedback, scores, st.booleans(), st.booleans()),
        min_size=1,
        max_size=30,
    )
)
def test_plan_invariants(rows: list[tuple[Any, ...]]) -> None:
    """Property: every label gets one action; a patch always changes something, and nothing else does."""
    chosen = chosen_frame(
        [
            (f"l{i}", f, s, "csv:a" if csv else "rule:r")
            for i, (f, s, _, _, csv, _) in enumerate(rows)
        ]
    )
    current = current_frame(
        [(f"l{i}", cf, cs, None) for i, (_, _, cf, cs, _, found) in enumerate(rows) if found]
    )
    decided = decide(chosen, current, overwrite_existing=("csv",), precedence=("csv", "rules"))
    out = build_bodies(decided, stamp=False, run_id="r")
    assert out.height == len(rows)
    for row in out.iter_rows(named=True):
        f, s, cf, cs, csv, found = rows[int(row["log_id"][1:])]
        changes = (f is not None and f != cf) or (s is not None and s != cs)
        if not found:
            assert row["action"] == "not_found"
        elif not changes:
            assert row["action"] == "unchanged"
            assert row["body"] is None
        elif row["action"] == "patch":
            body = json.loads(row["body"])
            assert body
            assert body.get("feedback", cf) == (f if f is not None else cf)
            assert body.get("score", cs) == (s if s is not None else cs)
        else:
            assert row["action"] == "keep_existing"
            assert not csv


# ---------------------------------------------------------------------------------------------
# The stage, with logs outside the window looked up through a mock API


class FakeApi:
    """A MockTransport handler holding a few logs; records every request."""

    def __init__(self, logs: dict[str, dict[str, Any]]) -> None:
        self.logs = logs
        self.requests: list[httpx.Request] = []
        self.hide_from_list: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.rstrip("/")
        if request.method == "GET" and path.endswith("/logs"):
            filters = json.loads(request.url.params["filters"])
            ids = next(f["value"] for f in filters if f["key"] == "id")
            assert len(ids) <= 50
            found = [self.logs[i] for i in ids if i in self.logs and i not in self.hide_from_list]
            info = {"page": 1, "per_page": 50, "count": len(found), "total_count": len(found)}
            return httpx.Response(200, json={"success": True, "result": found, "result_info": info})
        log_id = path.rsplit("/", 1)[1]
        if request.method == "GET":
            if log_id in self.logs:
                return httpx.Response(200, json={"success": True, "result": self.logs[log_id]})
            return httpx.Response(
                404, json={"success": False, "errors": [{"code": 7002, "message": "Not Found"}]}
            )
        raise AssertionError(f"unexpected {request.method} {path}")


def make_job(tmp_path: Path, extra: str = "") -> JobConfig:
    text = (
        f'[gateway]\naccount_id = "{ACCOUNT}"\ngateway_id = "gw"\nbase_url = "http://api.test"\n'
        f'[store]\ndata_dir = "{tmp_path / "data"}"\n' + extra
    )
    path = tmp_path / "job.toml"
    path.write_text(text, encoding="utf-8")
    return load_job(path, env={"CLOUDFLARE_API_TOKEN": "t0ken"})


def api_log(
    log_id: str, feedback: int | None = None, metadata: str | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": log_id, "created_at": "2026-10-01T00:00:00.000Z"}
    if feedback is not None:
        entry["feedback"] = feedback
    entry["score"] = None
    if metadata is not None:
        entry["metadata"] = metadata
    return entry


def write_extract(job: JobConfig, rows: list[dict[str, Any]]) -> None:
    now = datetime(2026, 11, 2, tzinfo=UTC)
    full = [
        {
            **{name: None for name in LOG_SCHEMA.names},
            "created_at": datetime(2026, 11, 1, 12, tzinfo=UTC),
            "extracted_at": now,
            **row,
        }
        for row in rows
    ]
    import pyarrow as pa

    table = pa.Table.from_pylist(full, schema=LOG_SCHEMA)
    part = store.partition_dir(job.store.data_dir, "gw", WINDOW.start.date())
    store.write_parquet_atomic(table, part / "part-0.parquet")


def write_chosen(run: store.RunInfo, rows: list[tuple[str, int | None, float | None, str]]) -> None:
    frame = chosen_frame(rows).with_columns(labeled_at=pl.lit(datetime(2026, 11, 2, tzinfo=UTC)))
    frame.write_parquet(run.paths.chosen)


def test_plan_stage_looks_up_old_logs_in_batches_and_writes_the_plan(tmp_path: Path) -> None:
    """Logs outside the window cost one list request per 50 ids, plus a GET only for stragglers."""
    job = make_job(tmp_path, "[load]\nstamp_metadata = true\n")
    run = store.create_run(job.store.data_dir, job.name, "gw", WINDOW)
    write_extract(job, [{"id": "in-1", "feedback": None}, {"id": "in-2", "feedback": 1}])
    old = {f"old-{i}": api_log(f"old-{i}", metadata='{"user":"u"}') for i in range(120)}
    api = FakeApi(old)
    api.hide_from_list = {"old-7"}  # the list misses it (e.g. eventual consistency): GET finds it
    labels = [("in-1", 1, None, "rule:r"), ("in-2", 1, None, "rule:r")]
    labels += [(f"old-{i}", -1, None, "csv:a.csv") for i in range(120)]
    labels += [("nope", 1, None, "csv:a.csv")]
    write_chosen(run, labels)

    async def go() -> Any:
        async with LogsClient(
            job.gateway, retry=NO_WAIT, transport=httpx.MockTransport(api)
        ) as client:
            return await plan(job, run, client=client)

    result = asyncio.run(go())
    assert (result.patch, result.unchanged, result.keep_existing, result.not_found) == (
        121,
        1,
        0,
        1,
    )
    # 121 ids to look up: 3 list requests, GET for old-7 and the unknown id.
    assert result.lookup_requests == 3 + 2
    # The look-ups' entries carry no feedback field: verify may have to GET each patched log.
    assert result.requests_needed == 121 + 3 + 121
    assert result.estimated_seconds == pytest.approx(245 / 3.6)
    table = pq.read_table(run.paths.plan)
    assert table.schema.equals(PLAN_SCHEMA)
    rows = {r["log_id"]: r for r in table.to_pylist()}
    assert json.loads(rows["old-7"]["body"]) == {
        "feedback": -1,
        "metadata": {"user": "u", "label_source": "csv:a.csv", "label_run": run.run_id},
    }
    assert rows["in-1"]["found_in"] == "extract"
    assert rows["old-3"]["found_in"] == "lookup"
    saved = json.loads(run.paths.stage_result("plan").read_text())
    assert {"patch", "unchanged", "keep_existing", "not_found"} <= saved.keys()


def test_lookup_ignores_entries_it_did_not_ask_for() -> None:
    """Were the id filter ever dropped, unrelated logs in the answer must not count as found."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.rstrip("/").endswith("/logs"):
            result = [api_log("other")]
            info = {"page": 1, "per_page": 50, "count": 1, "total_count": 1}
            return httpx.Response(
                200, json={"success": True, "result": result, "result_info": info}
            )
        return httpx.Response(404, json={"success": False, "errors": [{"code": 7002}]})

    async def go() -> Any:
        job_gateway = load_job_gateway()
        async with LogsClient(
            job_gateway, retry=NO_WAIT, transport=httpx.MockTransport(handler)
        ) as client:
            return await lookup_logs(client, ["wanted"])

    found = asyncio.run(go())
    assert found.entries == {}
    assert found.missing == {"wanted"}
    assert (found.list_requests, found.get_requests) == (1, 1)


def load_job_gateway() -> Any:
    from pipeline.config import GatewayConfig, Secret

    return GatewayConfig(ACCOUNT, "gw", base_url="http://api.test", token=Secret("t"))
