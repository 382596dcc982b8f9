"""Helpers for the plan / load / verify / report tests: a job, a run, a plan, a tiny fake API.

The fake API is a MockTransport handler for unit tests of decisions and bookkeeping; behaviour over
real HTTP (rate limits, faults, lag) is tested against the emulator.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa

from pipeline.config import JobConfig, load_job
from pipeline.errors import BudgetExhausted
from pipeline.plan import PLAN_SCHEMA, body_hash, body_json
from pipeline.state import store
from pipeline.window import Window

ACCOUNT = "0123456789abcdef0123456789abcdef"
WINDOW = Window(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))
TOKEN = "t0ken-for-tests"


def make_job(tmp_path: Path, extra: str = "", base_url: str = "http://api.test") -> JobConfig:
    text = (
        f'[gateway]\naccount_id = "{ACCOUNT}"\ngateway_id = "gw"\nbase_url = "{base_url}"\n'
        f'[store]\ndata_dir = "{tmp_path / "data"}"\n' + extra
    )
    path = tmp_path / "job.toml"
    path.write_text(text, encoding="utf-8")
    return load_job(path, env={"CLOUDFLARE_API_TOKEN": TOKEN})


def make_run(job: JobConfig) -> store.RunInfo:
    return store.create_run(job.store.data_dir, job.name, job.gateway.gateway_id, WINDOW)


def write_plan(
    run: store.RunInfo,
    bodies: Mapping[str, Mapping[str, Any]],
    *,
    provider: str = "openai",
    model: str = "gpt-4o-mini",
    **extra: str,
) -> None:
    """A plan whose patch rows carry these bodies; `extra` adds rows with other actions."""
    rows: list[dict[str, Any]] = []
    for log_id, body in bodies.items():
        text = body_json(body)
        rows.append(
            {
                "log_id": log_id,
                "action": "patch",
                "source": "csv:a.csv",
                "reason": "test",
                "found_in": "extract",
                "provider": provider,
                "model": model,
                "desired_feedback": body.get("feedback"),
                "desired_score": body.get("score"),
                "desired_metadata": json.dumps(body["metadata"]) if "metadata" in body else None,
                "body": text,
                "body_hash": body_hash(text),
                "stamp_skipped": False,
            }
        )
    for log_id, action in extra.items():
        rows.append({"log_id": log_id, "action": action, "stamp_skipped": False})
    full = [{**dict.fromkeys(PLAN_SCHEMA.names), **r} for r in rows]
    store.write_parquet_atomic(pa.Table.from_pylist(full, schema=PLAN_SCHEMA), run.paths.plan)


class FakeApi:
    """Logs in a dict; PATCH replaces fields; `fail` maps an id to the status it always gets."""

    def __init__(self, logs: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.logs: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (logs or {}).items()}
        self.fail: dict[str, int] = {}
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.requests: list[httpx.Request] = []
        self.on_patch: Callable[[str], None] | None = None
        self.drop_fields: set[str] = set()  # fields never shown on read (e.g. "score")
        self.stale_reads: dict[str, int] = {}  # id -> how many reads still show the old values
        self._before: dict[str, dict[str, Any]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.rstrip("/")
        if request.method == "GET" and path.endswith("/logs"):
            filters = json.loads(request.url.params.get("filters", "[]"))
            ids = next((f["value"] for f in filters if f["key"] == "id"), list(self.logs))
            found = [self._read(i) for i in ids if i in self.logs]
            info = {"page": 1, "per_page": 50, "count": len(found), "total_count": len(found)}
            return httpx.Response(200, json={"success": True, "result": found, "result_info": info})
        log_id = path.rsplit("/", 1)[1]
        if log_id in self.fail:
            status = self.fail[log_id]
            code = {403: 10000, 404: 7002}.get(status, 0)
            return httpx.Response(
                status, json={"success": False, "errors": [{"code": code, "message": "nope"}]}
            )
        if log_id not in self.logs:
            return httpx.Response(
                404, json={"success": False, "errors": [{"code": 7002, "message": "Not Found"}]}
            )
        if request.method == "GET":
            return httpx.Response(200, json={"success": True, "result": self._read(log_id)})
        if request.method == "PATCH":
            body = json.loads(request.content)
            self.patches.append((log_id, body))
            if self.on_patch is not None:
                self.on_patch(log_id)
            self._before.setdefault(log_id, dict(self.logs[log_id]))
            entry = self.logs[log_id]
            for key, value in body.items():
                entry[key] = json.dumps(value) if key == "metadata" and value is not None else value
            return httpx.Response(200, json={"success": True, "result": {}})
        raise AssertionError(f"unexpected {request.method} {path}")

    def _read(self, log_id: str) -> dict[str, Any]:
        entry = self.logs[log_id]
        if self.stale_reads.get(log_id, 0) > 0:
            self.stale_reads[log_id] -= 1
            entry = self._before.get(log_id, entry)
        return {k: v for k, v in entry.items() if k not in self.drop_fields}


class CappedBudget:
    """A budget that allows `limit` requests, then raises BudgetExhausted (like max_requests)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.used >= self.limit:
            raise BudgetExhausted(f"max_requests={self.limit} reached")
        self.used += 1
        yield

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        return None


def new_log(log_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": log_id,
        "created_at": "2026-11-01T12:00:00.000Z",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "feedback": None,
        "score": None,
        "metadata": None,
        **fields,
    }


# ---------------------------------------------------------------------------------------------
# Against the emulator over real HTTP


def emulator_job(tmp_path: Path, emu: Any, budget: str = "", extra: str = "") -> JobConfig:
    """A job file pointing at a running emulator, its budget state inside tmp_path."""
    text = (
        f'[gateway]\naccount_id = "{emu.account_id}"\ngateway_id = "{emu.gateway_id}"\n'
        f'base_url = "{emu.base_url}"\n'
        f'[store]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[budget]\nshared_state = "{tmp_path / "budget.sqlite"}"\n{budget}\n{extra}'
    )
    path = tmp_path / "job.toml"
    path.write_text(text, encoding="utf-8")
    return load_job(path, env={"CLOUDFLARE_API_TOKEN": emu.edit_token})


def write_chosen(run: store.RunInfo, labels: Mapping[str, int]) -> None:
    """chosen.parquet as the label stage writes it: one rule label per log id."""
    import polars as pl

    pl.DataFrame(
        {
            "log_id": list(labels),
            "feedback": list(labels.values()),
            "score": [None] * len(labels),
            "source": ["csv:labels.csv"] * len(labels),
            "reason": ["test"] * len(labels),
        },
        schema={
            "log_id": pl.String,
            "feedback": pl.Int8,
            "score": pl.Float64,
            "source": pl.String,
            "reason": pl.String,
        },
    ).write_parquet(run.paths.chosen)


def admin(emu: Any, what: str) -> Any:
    return httpx.get(f"{emu.admin_url}/{what}").json()


def no_feedback_logs(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """Generated emulator logs with no feedback yet, so every label is a patch."""
    from pipeline.emulator.seed import generate_logs

    logs = generate_logs(n, seed=seed, start="2026-10-01T00:00:00Z", end="2026-10-02T00:00:00Z")
    for log in logs:
        log["feedback"], log["score"] = None, None
    return logs
