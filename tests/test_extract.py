"""Extract: every log of the window exactly once, in Parquet, whatever the API does meanwhile."""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import random
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipeline.cli import cli
from pipeline.config import JobConfig
from pipeline.emulator.server import running_emulator
from pipeline.emulator.settings import EmulatorSettings
from pipeline.errors import BudgetExhausted
from pipeline.extract import ExtractResult, extract
from pipeline.extract.rows import log_row
from pipeline.gateway import open_client
from pipeline.progress import Progress
from pipeline.schemas import LOG_SCHEMA
from pipeline.state.store import log_files, partition_dir
from pipeline.window import Window
from tests.extractkit import (
    DAY,
    DAY_MS,
    Emulator,
    FakeTime,
    Hooked,
    extracted_ids,
    logs_at,
    make_job,
)

WINDOW = Window(DAY, DAY + timedelta(days=1))


def run_extract(
    job: JobConfig,
    window: Window,
    transport: Hooked,
    *,
    time: FakeTime | None = None,
    progress: Progress | None = None,
) -> ExtractResult:
    async def go() -> ExtractResult:
        clock = None if time is None else time
        sleep = None if time is None else time.sleep
        async with open_client(job, transport=transport, clock=clock, sleep=sleep) as client:
            return await extract(job, window, client=client, progress=progress, clock=clock)

    return asyncio.run(go())


def spread(n: int, start_ms: int = DAY_MS, span_ms: int = 86_400_000, seed: int = 1) -> list[int]:
    rng = random.Random(seed)
    return sorted(rng.randrange(start_ms, start_ms + span_ms) for _ in range(n))


def test_a_day_is_extracted_exactly_in_one_request_per_50_logs(tmp_path: Path) -> None:
    """A quiet day of 1,234 logs costs the minimum, one request per 50 logs, plus one count to
    check, and lands in that day's partition, once each."""
    stamps = spread(1234)
    before, after = DAY_MS - 5, DAY_MS + 86_400_000  # just outside the window on both sides
    emulator = Emulator(logs_at([before, *stamps, after]))
    job = make_job(tmp_path)

    result = run_extract(job, WINDOW, emulator.transport())

    ids = extracted_ids(job)
    assert sorted(ids) == sorted(emulator.ids(WINDOW))
    assert len(ids) == len(set(ids)) == 1234
    assert result.requests == math.ceil(1234 / 50) + 1
    assert result.complete and result.total_count == 1234 and result.note == ""
    assert (result.arrived, result.vanished, result.changes_ahead) == (0, 0, 0)
    assert result.partitions == ("logs/gateway=demo-gateway/date=2026-11-01",)
    data = result.to_json()
    assert {"logs", "requests", "partitions"} <= set(data) and data["logs"] == 1234


def test_files_have_the_log_schema_and_keep_every_field(tmp_path: Path) -> None:
    """Columns and types are exactly LOG_SCHEMA; metadata stays the API's JSON string; unknown
    fields are kept in `extra`."""
    emulator = Emulator(logs_at(spread(120)))
    job = make_job(tmp_path)
    run_extract(job, WINDOW, emulator.transport())

    [path] = log_files(job.store.data_dir, job.gateway.gateway_id)
    table = pq.read_table(path)
    assert table.schema.equals(LOG_SCHEMA)
    rows = table.to_pylist()
    stored = emulator.store.get("0123456789abcdef0123456789abcdef", "demo-gateway", rows[0]["id"])
    assert stored is not None
    with_meta = next(r for r in rows if r["metadata"] is not None)
    assert isinstance(json.loads(with_meta["metadata"]), dict)
    assert all(r["extracted_at"] is not None for r in rows)


def test_thousands_of_logs_in_one_millisecond_are_all_found(tmp_path: Path) -> None:
    """2,000 logs sharing one created_at, with neighbours on both sides, come out complete, at
    most 1.2x the minimum of requests (the millisecond is cut into parts by duration, each
    ending on a short page)."""
    tie = DAY_MS + 3_600_000
    stamps = [tie] * 2000 + spread(300) + [tie - 1] * 70 + [tie + 1] * 60
    emulator = Emulator(logs_at(stamps))
    job = make_job(tmp_path)

    result = run_extract(job, WINDOW, emulator.transport())

    ids = extracted_ids(job)
    assert len(ids) == len(set(ids)) == len(stamps)
    assert set(ids) == set(emulator.ids(WINDOW))
    assert result.complete and result.requests <= 1.2 * math.ceil(len(stamps) / 50)


def test_300_logs_in_one_millisecond_cost_what_300_logs_anywhere_cost(tmp_path: Path) -> None:
    """A millisecond of 300 logs among 200 others: one request per 50 logs and one check, no
    log twice (the ids already read are left out of the next question)."""
    tie = DAY_MS + 7_200_000
    stamps = [tie] * 300 + spread(200)
    emulator = Emulator(logs_at(stamps))
    job = make_job(tmp_path)
    transport = emulator.transport()

    result = run_extract(job, WINDOW, transport)

    ids = extracted_ids(job)
    assert len(ids) == len(set(ids)) == 500 and set(ids) == set(emulator.ids(WINDOW))
    assert result.complete and transport.lists <= math.ceil(500 / 50) + 2


def test_a_crowded_millisecond_of_one_duration_is_paged_and_checked_by_counts(
    tmp_path: Path,
) -> None:
    """400 logs sharing one millisecond and one duration (nothing to cut them by): paged by
    numbers, believed because the count held steady and that many ids came; exact, exit 0."""
    tie = DAY_MS + 7_200_000
    logs = logs_at([tie] * 400 + spread(100))
    for log in logs[:400]:
        log["duration"] = 120
    emulator = Emulator(logs)
    job = make_job(tmp_path)

    result = run_extract(job, WINDOW, emulator.transport())

    ids = extracted_ids(job)
    assert len(ids) == len(set(ids)) == 500 and set(ids) == set(emulator.ids(WINDOW))
    assert result.complete and result.unverified_ms == 0


class RefusesLongLists(httpx.AsyncBaseTransport):
    """A gateway that answers 414 to an `id neq` list of more than `most` ids."""

    def __init__(self, inner: httpx.AsyncBaseTransport, most: int) -> None:
        self.inner, self.most, self.refused = inner, most, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        filters = json.loads(request.url.params.get("filters", "[]"))
        if any(f["key"] == "id" and len(f["value"]) > self.most for f in filters):
            self.refused += 1
            body = {"success": False, "errors": [{"code": 10000, "message": "URI too long"}]}
            return httpx.Response(414, json=body)
        return await self.inner.handle_async_request(request)


def test_an_api_that_refuses_long_id_lists_gets_shorter_ones(tmp_path: Path) -> None:
    """When the API refuses a long `id neq` list (414), the extract asks with shorter ones (the
    crowded millisecond cut into more parts) and still holds every log once, exit 0."""
    tie = DAY_MS + 7_200_000
    emulator = Emulator(logs_at([tie] * 400 + spread(100)))
    job = make_job(tmp_path)
    transport = RefusesLongLists(emulator.transport(), most=120)

    async def go() -> ExtractResult:
        async with open_client(job, transport=transport) as client:
            return await extract(job, WINDOW, client=client)

    result = asyncio.run(go())

    ids = extracted_ids(job)
    assert len(ids) == len(set(ids)) == 500 and set(ids) == set(emulator.ids(WINDOW))
    assert result.complete and transport.refused >= 1


def test_a_big_window_is_walked_by_several_requests_at_once(tmp_path: Path) -> None:
    """With API latency, idle workers take over half of the busiest stretch: up to
    budget.concurrency requests in flight, still every log exactly once."""
    # Real latency (20 ms a request): requests overlap whatever the budget's pacing does between
    # them, so the peak does not depend on how fast this machine happens to be.
    emulator = Emulator(
        logs_at(spread(6000)),
        EmulatorSettings(rate_limit_requests=10**6, latency_ms=20),
        sleep=asyncio.sleep,
    )
    job = make_job(tmp_path, budget="requests_per_period = 100000\nconcurrency = 3")

    result = run_extract(job, WINDOW, emulator.transport())

    ids = extracted_ids(job)
    assert len(ids) == len(set(ids)) == 6000
    assert set(ids) == set(emulator.ids(WINDOW))
    assert emulator.control.snapshot()["peak_concurrency"] == 3
    assert result.complete and result.requests <= math.ceil(6000 / 49) + 8


def test_window_edges_are_half_open_to_the_millisecond(tmp_path: Path) -> None:
    """A log at the window's start is in, a log at its end is out, 1 ms either side too."""
    start, end = DAY_MS + 1000, DAY_MS + 2000
    emulator = Emulator(logs_at([start - 1, start, start + 1, end - 1, end, end + 1]))
    job = make_job(tmp_path)
    window = Window(DAY + timedelta(seconds=1), DAY + timedelta(seconds=2))

    result = run_extract(job, window, emulator.transport())

    assert sorted(extracted_ids(job)) == sorted(emulator.ids(window))
    assert result.logs == 3


def test_extra_filters_from_the_job_go_to_the_api(tmp_path: Path) -> None:
    """[[extract.filters]] narrow what is extracted: the API does the filtering."""
    emulator = Emulator(logs_at(spread(400)))
    job = make_job(
        tmp_path, extra='[[extract.filters]]\nkey = "success"\noperator = "eq"\nvalue = [false]\n'
    )
    transport = emulator.transport()

    result = run_extract(job, WINDOW, transport)

    failed = {i for i in emulator.ids(WINDOW) if not emulator.store.get(*_gw(), i)["success"]}
    assert failed and set(extracted_ids(job)) == failed
    assert result.logs == len(failed)
    sent = json.loads(transport.requests[0].url.params["filters"])
    assert {"key": "success", "operator": "eq", "value": [False]} in sent


def _gw() -> tuple[str, str]:
    return "0123456789abcdef0123456789abcdef", "demo-gateway"


# ---------------------------------------------------------------------------------------------
# Logs changing while the client pages


CHURN = st.tuples(st.integers(0, 3), st.integers(0, 3))  # (inserted, deleted) per list request


@dataclass
class Churned:
    emulator: Emulator
    window: Window
    result: ExtractResult
    ids: list[str]  # extracted, duplicates included
    at_start: set[str]  # in the window before the extract
    inserted: set[str]  # logs inserted while it ran
    lists: int  # list requests the extract made

    @property
    def stayed(self) -> set[str]:
        """The logs in the window from the extract's start to its end."""
        return self.at_start & set(self.emulator.ids(self.window))


def churning_extract(
    tmp_path: Path,
    data: st.DataObject,
    *,
    n: int,
    crowd: int,
    spread_ms: int,
    churn: tuple[int, int],
    per_page: int,
    churn_ends: int,
    events: int,
    observable: bool,
) -> Churned:
    """Extract a generated dataset, `crowd` logs of it in one millisecond, while logs change.

    The emulator's churn inserts logs dated anywhere in the stored range (so also behind the
    client's position) and deletes random ones, on every list request before `churn_ends`. On
    top, up to `events` of those requests get logs inserted into the crowded millisecond and up
    to 3 logs of the window deleted.

    `observable`: every change moves counts the same way (only arrivals, or only deletions), so
    every range holding changes counts differently; see reconcile's docstring for the changes
    no count can see (as many arrivals as deletions within one counted range).
    """
    base = DAY_MS + 10_000
    stamps = sorted(data.draw(st.lists(st.integers(0, spread_ms), min_size=n, max_size=n)))
    tie = data.draw(st.integers(0, spread_ms))
    emulator = Emulator(logs_at([base + s for s in stamps] + [base + tie] * crowd, seed=n))
    sign = (churn[0] > churn[1]) - (churn[0] < churn[1]) or data.draw(st.sampled_from([1, -1]))
    if observable or data.draw(st.booleans()):  # the whole dataset: large windows come up often
        lo, hi = -2, spread_ms + 3
    else:
        lo = data.draw(st.integers(-2, spread_ms + 2))
        hi = data.draw(st.integers(lo + 1, spread_ms + 3))
    window = Window(
        DAY + timedelta(milliseconds=10_000 + lo), DAY + timedelta(milliseconds=10_000 + hi)
    )
    extra_at = data.draw(st.sets(st.integers(0, max(churn_ends - 1, 0)), max_size=events))
    rng = random.Random(n)
    at_start = set(emulator.ids(window))
    inserted: set[str] = set()

    def before_list(k: int) -> None:
        if k == 0 and churn_ends:
            emulator.control.configure(
                churn_insert_per_list=churn[0], churn_delete_per_list=churn[1]
            )
        if k == churn_ends:
            emulator.control.configure(churn_insert_per_list=0, churn_delete_per_list=0)
        if k in extra_at and k < churn_ends:
            ids = emulator.ids(window)
            deletes = min(len(ids), rng.randint(0, 3))
            if not observable:
                adds = rng.randint(0, 60)
            elif sign > 0:
                adds, deletes = rng.randint(1, 5), 0
            else:
                adds = 0
            tied = logs_at([base + tie] * adds, seed=k + n)
            inserted.update(log["id"] for log in tied)
            emulator.store.insert_logs(*_gw(), tied)
            emulator.store.delete_ids(*_gw(), rng.sample(ids, deletes))

    job = make_job(tmp_path, extra=f"[extract]\nper_page = {per_page}\n")
    transport = emulator.transport(before_list)
    result = run_extract(job, window, transport)
    inserted.update(emulator.control.churned()["inserted"])
    ids = extracted_ids(job)
    return Churned(emulator, window, result, ids, at_start, inserted, transport.lists)


# Each example is a whole extract against the emulator (~0.5-1 s): the fast suite tries 8,
# `make test-all` (CI) 40.
PROPERTY = settings(
    max_examples=int(os.environ.get("EXTRACT_EXAMPLES", "8")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY
@given(
    data=st.data(),
    n=st.integers(0, 400),
    crowd=st.sampled_from([0, 0, 60, 320, 700]),
    spread_ms=st.integers(1, 4_000),
    churn=CHURN,
    per_page=st.sampled_from([7, 20, 50]),
    churn_ends=st.integers(0, 60),
)
def test_property_logs_present_throughout_are_all_held_once_whatever_the_churn(
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
    n: int,
    crowd: int,
    spread_ms: int,
    churn: tuple[int, int],
    per_page: int,
    churn_ends: int,
) -> None:
    """Whatever the ties (hundreds of logs in one millisecond) and however logs come and go while
    the client pages (behind its position too, into the crowded millisecond, to the very end):
    every log in the window from start to end is extracted, none twice, nothing that was never
    in the window; reconcile stays within its bound; a complete result says so truthfully."""
    run = churning_extract(
        tmp_path_factory.mktemp("prop"),
        data,
        n=n,
        crowd=crowd,
        spread_ms=spread_ms,
        churn=churn,
        per_page=per_page,
        churn_ends=churn_ends,
        events=3,
        observable=False,
    )
    result, ids = run.result, set(run.ids)
    assert len(run.ids) == len(ids), "duplicates"
    assert run.stayed <= ids, "a log present throughout was missed"
    assert ids <= run.at_start | run.inserted, "a log that was never in the window"
    assert result.logs == len(ids) and result.exit_code == (0 if result.complete else 1)
    # Past the bound, each of the 4 workers may finish the request it has under way.
    assert result.extra_requests <= result.extra_bound + 4
    if not result.complete:
        assert "extract again" in result.note
    event(f"complete: {result.complete}")
    event(f"crowded: {crowd > 0}")


@PROPERTY
@given(
    data=st.data(),
    n=st.integers(0, 300),
    crowd=st.sampled_from([0, 60, 320]),
    spread_ms=st.integers(1, 4_000),
    sign_churn=st.sampled_from([(0, 0), (1, 0), (0, 1)]),
    churn_ends=st.integers(0, 3),
)
def test_property_changes_that_stop_are_settled_exactly_by_counting(
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
    n: int,
    crowd: int,
    spread_ms: int,
    sign_churn: tuple[int, int],
    churn_ends: int,
) -> None:
    """A few logs arrive or vanish (into a crowded millisecond too) early in the pass, behind
    its cursor or ahead, then the gateway is quiet: the extract finds them by counting, ends
    holding exactly the window's logs, says how many arrived and vanished, exit 0."""
    run = churning_extract(
        tmp_path_factory.mktemp("prop"),
        data,
        n=n,
        crowd=crowd,
        spread_ms=spread_ms,
        churn=sign_churn,
        per_page=50,
        churn_ends=churn_ends,
        events=1,
        observable=True,
    )
    result, ids = run.result, run.ids
    assert len(ids) == len(set(ids)), "duplicates"
    assert set(ids) == set(run.emulator.ids(run.window))
    assert result.complete and result.exit_code == 0 and result.note == ""
    assert result.total_count == len(ids) and not result.unsettled_ranges
    behind = result.arrived + result.vanished
    event(f"found behind the cursor: {min(behind, 3)}{'+' if behind >= 3 else ''}")


def test_churn_that_never_stops_is_reported_not_hidden(tmp_path: Path) -> None:
    """When logs keep changing on every request, the extract stops at its bound and says which
    ranges are unsettled and to extract again; every log that stayed is in, none twice."""
    emulator = Emulator(
        logs_at(spread(600)),
        EmulatorSettings(
            rate_limit_requests=10**6,
            latency_ms=1,
            churn_insert_per_list=3,
            churn_delete_per_list=1,
        ),
    )
    at_start = set(emulator.ids(WINDOW))
    job = make_job(tmp_path)

    result = run_extract(job, WINDOW, emulator.transport())

    ids = extracted_ids(job)
    assert len(ids) == len(set(ids))
    assert at_start & set(emulator.ids(WINDOW)) <= set(ids)
    assert not result.complete and result.unsettled_ranges
    assert "extract again" in result.note and "unsettled: 2026-11-01T" in result.note
    assert result.exit_code == 1 and "warning: logs were still being added" in result.summary()
    assert result.extra_requests <= result.extra_bound + 4
    assert ExtractResult.from_json(json.loads(json.dumps(result.to_json()))) == result


# ---------------------------------------------------------------------------------------------
# Rate limits and faults


def test_a_429_block_mid_extract_pauses_then_finishes_with_everything(tmp_path: Path) -> None:
    """Someone else uses up the token mid-extract: the 429 pauses the job for the whole 5-minute
    block (fake time), then it finishes and nothing is missing."""
    time = FakeTime()
    settings_ = EmulatorSettings(rate_limit_requests=60, rate_limit_window=10.0, block_seconds=300)
    emulator = Emulator(logs_at(spread(1500)), settings_, clock=time, sleep=time.sleep)
    job = make_job(tmp_path, budget="requests_per_period = 60\nperiod = 10")

    def before_list(k: int) -> None:
        if k == 10:  # another client of the token spends what is left of the window
            while emulator.control.limiter.hit("demo-read-token", 60, 10.0, 300).remaining:
                pass

    started = time.now
    result = run_extract(job, WINDOW, emulator.transport(before_list), time=time)

    assert sorted(extracted_ids(job)) == sorted(emulator.ids(WINDOW))
    assert result.complete and result.logs == 1500
    assert emulator.control.limiter.rejected == 1, "one 429, then the job waited out the block"
    assert time.now - started >= 300


def test_server_errors_and_dropped_connections_lose_nothing(tmp_path: Path) -> None:
    """With 5% 5xx answers and 5% dropped connections, the extract finishes with every log."""
    emulator = Emulator(
        logs_at(spread(2000)),
        EmulatorSettings(
            rate_limit_requests=10**6, latency_ms=1, error_rate=0.05, drop_rate=0.05, seed=7
        ),
    )
    job = make_job(tmp_path)
    time = FakeTime()

    result = run_extract(job, WINDOW, emulator.transport(), time=time)

    ids = extracted_ids(job)
    assert len(ids) == len(set(ids)) == 2000
    assert set(ids) == set(emulator.ids(WINDOW))
    faults = emulator.control.snapshot()["faults"]
    assert faults["server_errors"] > 0 and faults["dropped"] > 0
    assert result.requests > math.ceil(2000 / 50)


# ---------------------------------------------------------------------------------------------
# Partitions on disk


def test_re_extracting_replaces_the_window_and_keeps_the_rest_of_a_partial_day(
    tmp_path: Path,
) -> None:
    """A second extract of 06:00-12:00 replaces those hours (deleted logs go), and the rows of the
    same day outside the window, from the first extract, stay."""
    emulator = Emulator(logs_at(spread(800)))
    job = make_job(tmp_path)
    run_extract(job, WINDOW, emulator.transport())
    morning = Window(DAY + timedelta(hours=6), DAY + timedelta(hours=12))
    gone = emulator.ids(morning)[:10]
    emulator.store.delete_ids(*_gw(), gone)

    result = run_extract(job, morning, emulator.transport())

    ids = extracted_ids(job)
    assert len(ids) == len(set(ids))
    assert set(ids) == set(emulator.ids(WINDOW))
    assert not set(gone) & set(ids)
    assert result.logs == len(emulator.ids(morning))
    folder = partition_dir(job.store.data_dir, "demo-gateway", DAY.date())
    assert not list(folder.parent.glob(".staging-*"))


def test_a_day_without_logs_replaces_an_old_partition_with_an_empty_one(tmp_path: Path) -> None:
    """Re-extracting a day whose logs were all deleted leaves an empty partition, not stale rows."""
    emulator = Emulator(logs_at(spread(60)))
    job = make_job(tmp_path)
    run_extract(job, WINDOW, emulator.transport())
    emulator.store.delete_ids(*_gw(), emulator.ids(WINDOW))

    result = run_extract(job, WINDOW, emulator.transport())

    assert result.logs == 0 and extracted_ids(job) == []
    assert log_files(job.store.data_dir, "demo-gateway")  # the (empty) partition file is there


def test_a_budget_cap_stops_the_extract_and_leaves_partitions_as_they_were(
    tmp_path: Path,
) -> None:
    """Hitting --max-requests mid-extract raises BudgetExhausted; nothing half-written appears."""
    emulator = Emulator(logs_at(spread(500)))
    job = make_job(tmp_path, budget="requests_per_period = 100000\nmax_requests = 3")

    with pytest.raises(BudgetExhausted):
        run_extract(job, WINDOW, emulator.transport())

    assert extracted_ids(job) == []
    root = partition_dir(job.store.data_dir, "demo-gateway", DAY.date()).parent
    assert not list(root.glob(".staging-*"))


def test_progress_prints_plain_lines_when_not_a_terminal(tmp_path: Path) -> None:
    """Piped output gets plain progress lines with logs, requests and the budget."""
    emulator = Emulator(logs_at(spread(200)))
    job = make_job(tmp_path)
    stream = io.StringIO()

    run_extract(job, WINDOW, emulator.transport(), progress=Progress(True, stream, interval=0.0))

    lines = stream.getvalue().splitlines()
    assert len(lines) > 1
    assert re.match(
        r"extract: 200 logs, \d+ requests, [\d.]+/s \(budget [\d.]+/s on average\)", lines[-1]
    )


# ---------------------------------------------------------------------------------------------
# The result and the rows


def test_the_result_reads_back_from_its_json_file(tmp_path: Path) -> None:
    """What extract writes to the run folder reads back as the same result, and says exit 0."""
    emulator = Emulator(logs_at(spread(300)))
    job = make_job(tmp_path)
    result = run_extract(job, WINDOW, emulator.transport())

    data = json.loads(json.dumps(result.to_json()))  # through the file's JSON, not just a dict
    assert ExtractResult.from_json(data) == result
    assert result.exit_code == 0 and result.summary().startswith("extract 2026-11-01T00:00:00Z..")
    path = tmp_path / "extract.result.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert ExtractResult.read(path) == result


def test_an_older_result_file_without_the_newer_keys_still_reads(tmp_path: Path) -> None:
    """Keys an older version did not write take their defaults; a file missing a key that has
    none is not taken for an extract result."""
    old = {
        "logs": 3,
        "requests": 2,
        "partitions": ["logs/gateway=demo-gateway/date=2026-11-01"],
        "days": ["2026-11-01"],
        "window": {"start": "2026-11-01T00:00:00.000Z", "end": "2026-11-02T00:00:00.000Z"},
        "seconds": 0.5,
        "total_count": 3,
        "complete": True,
        "dropped_key": "ignored",
    }

    result = ExtractResult.from_json(old)

    assert (result.window, result.logs, result.days) == (WINDOW, 3, (DAY.date(),))
    assert (result.note, result.reconcile_rounds, result.ranges) == ("", 0, 1)
    assert result.to_json()["window"] == old["window"]
    path = tmp_path / "extract.result.json"
    path.write_text(json.dumps({k: v for k, v in old.items() if k != "logs"}), encoding="utf-8")
    assert ExtractResult.read(path) is None


def test_a_value_of_an_unexpected_type_is_kept_in_extra_not_lost() -> None:
    """A field the schema does not know, or a value of the wrong type, lands in `extra` as JSON;
    metadata sent as an object becomes its JSON string; 1.0 tokens are 1."""
    entry = {
        "id": "a",
        "created_at": "2026-11-01T00:00:00.000Z",
        "tokens_in": 12.0,
        "tokens_out": "many",
        "cached": 1,
        "feedback": 300,
        "metadata": {"team": "search"},
        "new_field": [1, 2],
    }

    row = log_row(entry, DAY_MS, DAY_MS + 5)

    assert row["tokens_in"] == 12 and row["cached"] is True
    assert row["tokens_out"] is None and row["feedback"] is None
    assert json.loads(row["metadata"]) == {"team": "search"}
    assert json.loads(row["extra"]) == {"feedback": 300, "new_field": [1, 2], "tokens_out": "many"}
    assert set(row) == {f.name for f in LOG_SCHEMA}


# ---------------------------------------------------------------------------------------------
# The command


def test_the_extract_command_writes_partitions_and_says_what_it_did(tmp_path: Path) -> None:
    """`aigw-feedback extract JOB --window ...` against the emulator over HTTP: a one-line summary,
    exit 0, the day's partition on disk; JSON with --log-format json."""
    # No rate limit to speak of: the default 1200 per 5 minutes would have the budget pace these
    # requests at 3.6/s, for real (about 2 s of sleeping), which is not what this test is about.
    unlimited = EmulatorSettings(rate_limit_requests=10**6)
    with running_emulator(unlimited, logs=logs_at(spread(300))) as server:
        job = make_job(tmp_path, base_url=server.base_url)
        runner = CliRunner()
        env = {"CLOUDFLARE_API_TOKEN": server.read_token}
        args = ["extract", str(job.path), "--window", "2026-11-01", "--quiet"]
        text = runner.invoke(cli, args, env=env)
        as_json = runner.invoke(cli, [*args, "--log-format", "json"], env=env)

    assert text.exit_code == 0, text.output
    assert "300 logs in" in text.output and "date=2026-11-01" in text.output
    assert as_json.exit_code == 0 and json.loads(as_json.output)["logs"] == 300
    assert len(extracted_ids(job)) == 300


def test_a_bad_window_is_a_usage_error_with_examples(tmp_path: Path) -> None:
    """A typo in --window exits 2 and shows what a window looks like; nothing is requested."""
    job = make_job(tmp_path)
    result = CliRunner().invoke(
        cli,
        ["extract", str(job.path), "--window", "2026-11-31"],
        env={"CLOUDFLARE_API_TOKEN": "t"},
    )
    assert result.exit_code == 2
    assert "2026-11-01..2026-11-07" in result.output


# ---------------------------------------------------------------------------------------------
# Crowded milliseconds under churn: exact for every log present throughout, at bounded cost


def test_a_crowded_millisecond_under_steady_churn_loses_nothing_that_stayed(
    tmp_path: Path,
) -> None:
    """300 logs in one millisecond, 2 inserts and 1 delete on every list request to the end:
    every log present from start to end is extracted, none twice, within 1.5x the quiet
    minimum of requests; the arrivals and deletions are counted and the result says what is
    unsettled and to extract again."""
    tie = DAY_MS + 40_000_000
    stamps = [tie] * 300 + spread(2200)
    emulator = Emulator(
        logs_at(stamps),
        EmulatorSettings(
            rate_limit_requests=10**6, churn_insert_per_list=2, churn_delete_per_list=1
        ),
    )
    at_start = set(emulator.ids(WINDOW))
    job = make_job(tmp_path)
    transport = emulator.transport()

    result = run_extract(job, WINDOW, transport)

    ids = extracted_ids(job)
    stayed = at_start & set(emulator.ids(WINDOW))
    assert len(ids) == len(set(ids)), "duplicates"
    assert stayed <= set(ids), f"{len(stayed - set(ids))} logs present throughout were missed"
    assert transport.lists <= 1.5 * math.ceil(len(at_start) / 50)
    assert result.exit_code == 1 and "extract again" in result.note
    data = result.to_json()
    assert abs(data["count_at_start"] - len(at_start)) <= 3  # the first request churns too
    assert data["changes_ahead"] > 0 and data["unsettled_ranges"]
