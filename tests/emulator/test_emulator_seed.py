"""Generated and sample logs are deterministic and look like a real gateway's week."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from pipeline.emulator.seed import (
    SAMPLE_END,
    SAMPLE_LOGS_PATH,
    SAMPLE_SEED,
    SAMPLE_START,
    generate_logs,
    load_sample,
    read_logs_file,
    write_logs_file,
)
from pipeline.emulator.timefmt import to_ms


@pytest.fixture(scope="module")
def week() -> list[dict]:
    return generate_logs(3000, seed=5, start="2026-11-01T00:00:00Z", end="2026-11-08T00:00:00Z")


def test_same_seed_same_logs_other_seed_other_logs():
    """generate_logs is a pure function of its arguments, ids included."""
    args = {"start": "2026-11-01", "end": "2026-11-02"}
    assert generate_logs(50, seed=3, **args) == generate_logs(50, seed=3, **args)
    assert generate_logs(50, seed=3, **args) != generate_logs(50, seed=4, **args)


def test_logs_fall_inside_the_window_oldest_first(week):
    """Every created_at lies in [start, end), in order, with ms precision and a Z."""
    stamps = [log["created_at"] for log in week]
    assert stamps == sorted(stamps)
    assert stamps[0] >= "2026-11-01T00:00:00.000Z" and stamps[-1] < "2026-11-08T00:00:00.000Z"
    assert all(len(s) == 24 and s.endswith("Z") for s in stamps)
    assert len({log["id"] for log in week}) == len(week)
    assert all(len(log["id"]) == 26 for log in week)


def test_logs_are_varied_like_a_real_gateway(week):
    """Several providers, provider errors, cache hits, absent costs, refusals, feedback and ties."""
    providers = Counter(log["provider"] for log in week)
    assert len(providers) >= 5
    failures = [log for log in week if not log["success"]]
    assert {log["status_code"] for log in failures} == {429, 500, 503}
    assert all("cost" not in log for log in failures)
    assert sum(log["cached"] for log in week) > 100
    assert any("cost" not in log for log in week if log["success"])
    assert 0.03 < sum(log["feedback"] is not None for log in week) / len(week) < 0.07
    assert {log["feedback"] for log in week} == {None, -1, 1}
    assert any(log["score"] is not None for log in week)
    heads = " ".join(log["response_head"] for log in week)
    assert "can't help with that" in heads and "Rate limit reached" in heads
    assert any(not log["request_head_complete"] for log in week)
    stamps = Counter(log["created_at"] for log in week)
    assert max(stamps.values()) >= 2, "some logs share a created_at millisecond"


def test_metadata_is_a_small_flat_map(week):
    """Metadata has at most 5 scalar entries (user, app, conversation, request_id...), or none."""
    with_meta = [log["metadata"] for log in week if log["metadata"]]
    assert 0.8 < len(with_meta) / len(week) < 0.95
    for meta in with_meta:
        assert len(meta) <= 5
        assert all(isinstance(v, str | int | bool) for v in meta.values())
    keys = Counter(k for meta in with_meta for k in meta)
    assert {"user", "app", "conversation", "request_id"} <= set(keys)


def test_there_is_a_day_night_rhythm(week):
    """More traffic in the afternoon (UTC) than at night."""
    hours = Counter(int(log["created_at"][11:13]) for log in week)
    assert hours[15] > 1.5 * hours[3]


def test_write_and_read_a_logs_file_round_trip(tmp_path, week):
    """Logs written as .jsonl.gz read back identical; gzip output is byte-reproducible."""
    first, second = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    write_logs_file(first, week[:100])
    write_logs_file(second, week[:100])
    assert first.read_bytes() == second.read_bytes()
    assert list(read_logs_file(first)) == week[:100]
    plain = tmp_path / "c.json"
    plain.write_text(json.dumps(week[:3]))
    assert list(read_logs_file(plain)) == week[:3]


def test_bad_logs_file_names_the_line(tmp_path):
    """A broken line in a JSONL file is reported with its line number."""
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a"}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        list(read_logs_file(path))


def test_committed_sample_is_what_the_generator_makes():
    """sample_data/logs.jsonl.gz holds 20,000 logs over 7 days, regenerable from its seed."""
    with gzip.open(SAMPLE_LOGS_PATH, "rt", encoding="utf-8") as fh:
        head = [json.loads(next(fh)) for _ in range(200)]
        total = 200 + sum(1 for _ in fh)
    assert total == 20_000
    regenerated = generate_logs(20_000, seed=SAMPLE_SEED, start=SAMPLE_START, end=SAMPLE_END)
    assert head == regenerated[:200]


def test_sample_shifts_so_the_newest_day_is_yesterday(tmp_path, week):
    """With shift_to_yesterday the newest log is dated yesterday; ids and times of day stay."""
    path = tmp_path / "logs.jsonl.gz"
    write_logs_file(path, week[:300])
    now = datetime(2027, 3, 15, 8, 30, tzinfo=UTC)
    original = load_sample(path, shift_to_yesterday=False)
    shifted = load_sample(path, shift_to_yesterday=True, now=now)
    assert max(log["created_at"] for log in shifted)[:10] == "2027-03-14"
    assert [log["id"] for log in shifted] == [log["id"] for log in original]
    deltas = {
        to_ms(a["created_at"]) - to_ms(b["created_at"])
        for a, b in zip(shifted, original, strict=True)
    }
    assert len(deltas) == 1 and deltas.pop() % 86_400_000 == 0
