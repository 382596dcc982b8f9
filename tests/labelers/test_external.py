"""The external labeler: a real command, its input and output files, and its failures."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from pipeline.config import ExternalLabelerConfig, Secret
from pipeline.gateway.client import LogsClient
from pipeline.gateway.retry import NO_WAIT
from pipeline.label import label
from pipeline.labelers.base import LabelContext, LabelerOutput
from pipeline.labelers.external import ExternalLabeler
from tests.labelkit import NOW, make_job, make_run, sample_logs, write_logs

JUDGE = str(Path(__file__).resolve().parents[2] / "jobs" / "labelers" / "keyword_judge.py")


@pytest.fixture(scope="module")
def entries() -> list[dict[str, Any]]:
    return sample_logs(200, seed=11)


@pytest.fixture(scope="module")
def logs(entries: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    return write_logs(make_job(tmp_path_factory.mktemp("ext")), entries)


def api(entries: list[dict[str, Any]], seen: list[str]) -> httpx.MockTransport:
    """GET /logs/{id} answered from `entries`, with their heads, as the real API does."""
    by_id = {e["id"]: e for e in entries}

    def handler(request: httpx.Request) -> httpx.Response:
        log_id = request.url.path.rsplit("/", 1)[-1]
        seen.append(log_id)
        if log_id not in by_id:
            body = {"success": False, "errors": [{"code": 7002, "message": "Not Found"}]}
            return httpx.Response(404, json=body)
        entry = {k: v for k, v in by_id[log_id].items() if not k.endswith("_body")}
        return httpx.Response(200, json={"success": True, "result": entry})

    return httpx.MockTransport(handler)


def run_external(
    tmp_path: Path,
    logs: pl.DataFrame,
    command: list[str],
    *,
    entries: list[dict[str, Any]] | None = None,
    seen: list[str] | None = None,
    **config: Any,
) -> LabelerOutput:
    cfg = ExternalLabelerConfig(enabled=True, name="judge", command=tuple(command), **config)
    labeler = ExternalLabeler(cfg, tmp_path / "external")

    async def go() -> LabelerOutput:
        if entries is None:
            return await labeler.label(logs, LabelContext("run-1", NOW))
        job = make_job(tmp_path)
        transport = api(entries, seen if seen is not None else [])
        async with LogsClient(job.gateway, retry=NO_WAIT, transport=transport) as client:
            return await labeler.label(logs, LabelContext("run-1", NOW, client=client))

    return asyncio.run(go())


def writer(lines: list[dict[str, Any]], exit_code: int = 0) -> list[str]:
    """A command that writes these JSON lines to {output}."""
    text = "\n".join(json.dumps(x) for x in lines)
    code = f"import sys; open(sys.argv[1], 'w').write({text!r}); sys.exit({exit_code})"
    return [sys.executable, "-c", code, "{output}"]


def test_keyword_judge_marks_refusals_and_errors_from_fetched_heads(
    tmp_path: Path, entries: list[dict[str, Any]], logs: pl.DataFrame
) -> None:
    """The shipped example judge, run for real: refusals and provider errors get thumbs down."""
    seen: list[str] = []
    out = run_external(
        tmp_path,
        logs,
        ["{python}", JUDGE, "{input}", "{output}"],
        entries=entries,
        seen=seen,
        send="sample",
        sample_size=120,
    )
    acct = out.accounting
    assert acct["status"] == "ok", acct.get("error")
    assert acct["sent"] == 120 and acct["requests"] == 120 == len(seen)
    assert acct["heads_fetched"] == 120
    sent = pl.read_parquet(tmp_path / "external" / "judge.input.parquet")
    assert sent["response_head"].null_count() == 0
    failed = set(sent.filter(pl.col("status_code") >= 400)["id"])
    refused = set(
        sent.filter(pl.col("response_head").str.contains("(?i)can't help|cannot assist"))["id"]
    )
    assert failed and refused
    judged = dict(out.labels.select("log_id", "feedback").iter_rows())
    assert failed | refused <= set(judged) and set(judged.values()) == {-1}
    assert set(out.labels["source"]) == {"external:judge"}


def test_a_failing_command_reports_its_exit_code_and_stderr_tail(
    tmp_path: Path, logs: pl.DataFrame
) -> None:
    """Exit 3: the labeler is 'failed' with the last lines of stderr; no labels, no exception."""
    code = "import sys; [print(f'step {i}', file=sys.stderr) for i in range(50)]; sys.exit(3)"
    out = run_external(tmp_path, logs, [sys.executable, "-c", code], fetch_heads=False)
    assert out.accounting["status"] == "failed"
    error = out.accounting["error"]
    assert "exited with code 3" in error and "step 49" in error and "step 10" not in error
    assert out.labels.height == 0


def test_a_command_past_its_timeout_is_stopped(tmp_path: Path, logs: pl.DataFrame) -> None:
    """A hung labeler is killed at the timeout and reported; the stage does not hang."""
    code = "import sys, time; print('thinking', file=sys.stderr, flush=True); time.sleep(60)"
    out = run_external(
        tmp_path, logs, [sys.executable, "-c", code], fetch_heads=False, timeout_seconds=0.5
    )
    assert out.accounting["status"] == "failed"
    assert "timed out after 0.5 s" in out.accounting["error"]
    assert out.accounting["seconds"] < 10


def test_a_missing_program_is_a_clear_error(tmp_path: Path, logs: pl.DataFrame) -> None:
    """A typo in argv[0] says the command could not start."""
    out = run_external(tmp_path, logs, ["no-such-labeler-xyz", "{input}"], fetch_heads=False)
    assert "could not start" in out.accounting["error"]


def test_output_is_validated_like_an_analysts_csv(tmp_path: Path, logs: pl.DataFrame) -> None:
    """Bad values and logs that were not sent are rejected and counted; the last row wins."""
    ids = logs["id"].to_list()
    lines = [
        {"log_id": ids[0], "feedback": "up", "reason": "fine"},
        {"log_id": ids[1], "feedback": 5},
        {"log_id": ids[2], "score": "85%"},
        {"log_id": "NOT-SENT", "feedback": -1},
        {"log_id": ids[0], "feedback": "down", "reason": "second thoughts"},
    ]
    out = run_external(tmp_path, logs, writer(lines), fetch_heads=False)
    acct = out.accounting
    assert (acct["rows"], acct["accepted"], acct["rejected"]) == (5, 3, 2)
    assert acct["rejected_by_reason"] == {"bad_feedback": 1, "not_sent": 1}
    assert (acct["labels"], acct["superseded"]) == (2, 1)
    assert sorted(out.labels.select("log_id", "feedback", "score").rows()) == sorted(
        [(ids[0], -1, None), (ids[2], None, 85.0)]
    )
    assert Path(acct["rejects_path"]).exists()


def test_output_may_be_csv_or_parquet(tmp_path: Path, logs: pl.DataFrame) -> None:
    """The output format is recognised by content, whatever the command wrote."""
    log_id = logs["id"][0]
    csv_cmd = [
        sys.executable,
        "-c",
        f"import sys; open(sys.argv[1],'w').write('id;thumbs\\n{log_id};👎\\n')",
        "{output}",
    ]
    out = run_external(tmp_path / "csv", logs, csv_cmd, fetch_heads=False)
    assert out.labels.select("log_id", "feedback").rows() == [(log_id, -1)]
    pq_code = (
        "import sys, polars as pl; "
        f"pl.DataFrame({{'log_id': ['{log_id}'], 'score': [42.0]}}).write_parquet(sys.argv[1])"
    )
    out = run_external(
        tmp_path / "pq", logs, [sys.executable, "-c", pq_code, "{output}"], fetch_heads=False
    )
    assert out.labels.select("log_id", "score").rows() == [(log_id, 42.0)]


def test_send_unlabeled_skips_logs_already_labeled_or_carrying_feedback(
    tmp_path: Path, logs: pl.DataFrame
) -> None:
    """'unlabeled' sends only logs no earlier labeler labeled and with no feedback yet."""
    cfg = ExternalLabelerConfig(enabled=True, command=("x",), send="unlabeled")
    labeler = ExternalLabeler(cfg, tmp_path)
    first = pl.Series([logs["id"][0], logs["id"][1]])
    sent = labeler.select(logs, LabelContext("r", NOW, labeled=first))
    expected = logs.filter(
        ~pl.col("id").is_in(first.implode())
        & pl.col("feedback").is_null()
        & pl.col("score").is_null()
    )
    assert sorted(sent["id"]) == sorted(expected["id"])
    assert expected.height < logs.height - 2  # some logs carry feedback already


def test_sample_is_seeded_by_the_run(tmp_path: Path, logs: pl.DataFrame) -> None:
    """The same run sends the same sample (resume); another run a different one."""
    cfg = ExternalLabelerConfig(enabled=True, command=("x",), send="sample", sample_size=30)
    labeler = ExternalLabeler(cfg, tmp_path)
    a = labeler.select(logs, LabelContext("run-a", NOW))["id"].to_list()
    assert a == labeler.select(logs.reverse(), LabelContext("run-a", NOW))["id"].to_list()
    assert len(a) == 30 and a != labeler.select(logs, LabelContext("run-b", NOW))["id"].to_list()


def test_a_failed_external_labeler_does_not_stop_the_stage(tmp_path: Path) -> None:
    """Rules still label and the stage result carries the external error."""
    extra = (
        '[[labels.rules]]\nname = "errors"\nwhen = "status_code >= 400"\nfeedback = -1\n'
        "[labels.external]\n"
        f'command = ["{sys.executable}", "-c", "import sys; sys.exit(7)"]\n'
        "fetch_heads = false\n"
    )
    job = make_job(tmp_path, extra)
    logs = write_logs(job, sample_logs(200, seed=11))
    run = make_run(job)
    result = asyncio.run(label(job, run, clock=lambda: NOW))
    errors = logs.filter(pl.col("status_code") >= 400).height
    assert errors > 0 and result.by_source == {"rule:errors": errors}
    assert len(result.errors) == 1 and "exited with code 7" in result.errors[0]
    assert result.to_json()["external"]["status"] == "failed"


def test_the_command_runs_without_the_pipelines_secrets(
    tmp_path: Path, logs: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A labeler that writes its whole environment into a reason sees no token and no secret
    the job withholds, but keeps what a judge needs (its own provider's key, PATH)."""
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "cf-token-never-for-children")
    monkeypatch.setenv("TOKEN_COPY", "cf-token-never-for-children")
    monkeypatch.setenv("JUDGE_DB_PASSWORD", "db-password-withheld")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-judge-keeps-this")
    code = (
        "import json, os, sys; "
        f"row = {{'log_id': {logs['id'][0]!r}, 'feedback': 1, 'reason': json.dumps(dict(os.environ))}}; "
        "open(sys.argv[1], 'w').write(json.dumps(row))"
    )
    out = run_external(
        tmp_path,
        logs,
        [sys.executable, "-c", code, "{output}"],
        fetch_heads=False,
        withheld_env=("CLOUDFLARE_API_TOKEN", "JUDGE_DB_PASSWORD"),
        withheld_values=(Secret("cf-token-never-for-children"),),
    )
    assert out.accounting["status"] == "ok", out.accounting.get("error")
    seen = json.loads(out.labels["reason"][0])
    assert seen["OPENAI_API_KEY"] == "sk-judge-keeps-this" and "PATH" in seen
    assert not {"CLOUDFLARE_API_TOKEN", "TOKEN_COPY", "JUDGE_DB_PASSWORD"} & set(seen)
