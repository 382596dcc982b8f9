"""Rules in the job file: SQL conditions over the logs, checked when the job loads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import polars as pl
import pytest

from pipeline.config import RuleConfig
from pipeline.errors import ConfigError
from pipeline.labelers.base import LabelContext
from pipeline.labelers.rules import RulesLabeler
from tests.labelkit import NOW, make_job, sample_logs, write_logs


def rule_job(tmp_path: Path, rules: str) -> None:
    make_job(tmp_path, rules)


def run_rules(logs: pl.DataFrame, *rules: RuleConfig) -> tuple[pl.DataFrame, dict[str, object]]:
    out = asyncio.run(RulesLabeler(rules).label(logs, LabelContext("r", NOW)))
    return out.labels, out.accounting


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    tmp = tmp_path_factory.mktemp("rules")
    return write_logs(make_job(tmp), sample_logs(400))


def test_rule_labels_exactly_the_logs_its_condition_matches(logs: pl.DataFrame) -> None:
    """`when = "status_code >= 500"` with feedback -1 labels every 5xx log and nothing else."""
    labels, acct = run_rules(logs, RuleConfig("errors", "status_code >= 500", -1, reason="5xx"))
    expected = set(logs.filter(pl.col("status_code") >= 500)["id"])
    assert expected and set(labels["log_id"]) == expected
    assert set(labels["feedback"]) == {-1} and set(labels["source"]) == {"rule:errors"}
    assert set(labels["reason"]) == {"5xx"}
    assert acct["rules"] == {
        "errors": {
            "matched": len(expected),
            "labels": len(expected),
            "invalid_feedback": 0,
            "invalid_score": 0,
        }
    }


def test_feedback_and_score_can_be_sql_expressions(logs: pl.DataFrame) -> None:
    """A score computed from the log's own columns, per log, vectorised."""
    rule = RuleConfig(
        "speed",
        "success",
        feedback="CASE WHEN duration < 1000 THEN 1 ELSE -1 END",
        score="GREATEST(0, 100 - duration / 100)",
    )
    labels, _ = run_rules(logs, rule)
    joined = labels.join(logs, left_on="log_id", right_on="id")
    assert joined.height == logs.filter(pl.col("success")).height
    fast = joined.filter(pl.col("duration") < 1000)
    assert set(fast["feedback"]) == {1}
    assert set(joined.filter(pl.col("duration") >= 1000)["feedback"]) == {-1}
    assert (joined["score"] - (100 - joined["duration"] / 100).clip(0, None)).abs().max() < 1e-9


def test_metadata_can_be_matched_with_like(logs: pl.DataFrame) -> None:
    """metadata is the API's JSON string; LIKE finds a key/value in it."""
    labels, _ = run_rules(logs, RuleConfig("bot", "metadata LIKE '%support-bot%'", 1))
    expected = logs.filter(pl.col("metadata").str.contains("support-bot"))["id"]
    assert sorted(labels["log_id"]) == sorted(expected)


def test_out_of_range_values_are_counted_not_written(logs: pl.DataFrame) -> None:
    """A feedback expression giving 0 or a score over 100 means 'no opinion' and is counted."""
    labels, acct = run_rules(
        logs, RuleConfig("odd", "true", feedback="0", score="CASE WHEN cost > 0 THEN 50 END")
    )
    stats = acct["rules"]["odd"]  # type: ignore[index]
    assert stats["matched"] == logs.height
    assert stats["invalid_feedback"] == logs.height
    assert stats["invalid_score"] == logs.filter(~(pl.col("cost") > 0).fill_null(False)).height
    assert labels["feedback"].null_count() == labels.height
    assert labels.height == stats["labels"] == logs.height - stats["invalid_score"]


@pytest.mark.parametrize(
    ("when", "message"),
    [
        (
            "modle = 'gpt-4o'",
            r"rule 'r1'.*unknown column 'modle'.*available columns: id, created_at",
        ),
        ("status_code >>> 500", r"rule 'r1'.*not a valid SQL expression"),
        ("duration + 1", r"rule 'r1'.*must be a condition"),
        ("__import__('os').system('true')", r"rule 'r1'.*(not a valid SQL|unknown)"),
    ],
)
def test_a_bad_rule_fails_when_the_job_loads(tmp_path: Path, when: str, message: str) -> None:
    """Typos and bad SQL stop the job at load time, naming the rule and the columns."""
    rules = f'[[labels.rules]]\nname = "r1"\nwhen = "{when}"\nfeedback = -1\n'
    with pytest.raises(ConfigError, match=message) as info:
        make_job(tmp_path, rules)
    assert "labels.rules[1].when" in str(info.value)


def test_a_bad_score_expression_names_its_key(tmp_path: Path) -> None:
    """The error points at `score`, not at `when`."""
    rules = '[[labels.rules]]\nname = "r1"\nwhen = "true"\nscore = "model"\n'
    with pytest.raises(ConfigError, match=r"labels\.rules\[1\]\.score.*must give a number"):
        make_job(tmp_path, rules)


def test_null_conditions_do_not_match(logs: pl.DataFrame) -> None:
    """`cost > 1` is null where cost is absent: those logs are not labeled."""
    labels, _ = run_rules(logs, RuleConfig("pricey", "cost > 0.0001", -1))
    assert set(labels["log_id"]) == set(logs.filter(pl.col("cost") > 0.0001)["id"])
