"""Helpers for the job-level tests (run, backfill, lock, CLI): a job file and a seeded emulator."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from pipeline.config import JobConfig, load_job
from pipeline.emulator import EmulatorSettings, RunningEmulator, generate_logs, running_emulator

D0 = datetime(2026, 11, 10, tzinfo=UTC)
DAY = timedelta(days=1)
TOKEN_ENV = "AIGW_TEST_TOKEN"
ACCOUNT = "0123456789abcdef0123456789abcdef"
FAST = 1_000_000  # requests per period, for the emulator and the job: no pacing in tests


def night(n: int) -> datetime:
    """02:00 UTC on the morning after day n: its nightly window is day n."""
    return D0 + (n + 1) * DAY + timedelta(hours=2)


def job_text(
    *,
    data_dir: Path,
    base_url: str,
    name: str = "nightly",
    gateway_id: str = "test-gateway",
    requests_per_period: int = FAST,
    extra: str = "",
) -> str:
    """A job file: rules that label most logs, the CSV inbox in the data dir, no external labeler."""
    return f"""
name = "{name}"
[gateway]
account_id = "{ACCOUNT}"
gateway_id = "{gateway_id}"
base_url = "{base_url}"
token_env = "{TOKEN_ENV}"
[store]
data_dir = "{data_dir}"
[window]
lag = "15m"
[budget]
requests_per_period = {requests_per_period}
period = "5m"
concurrency = 4
shared_state = "{data_dir / "budget.sqlite"}"
[labels.csv]
inbox = "{data_dir / "inbox"}"
[[labels.rules]]
name = "provider-error"
when = "status_code >= 500"
feedback = -1
reason = "provider error"
[[labels.rules]]
name = "answered"
when = "success"
score = "CASE WHEN duration < 1000 THEN 90 ELSE 60 END"
reason = "answered"
[verify]
recheck_wait = "0s"
recheck_attempts = 1
{extra}
"""


def write_job(tmp_path: Path, base_url: str, **kwargs: Any) -> Path:
    path = tmp_path / f"{kwargs.get('name', 'nightly')}.toml"
    data_dir = kwargs.pop("data_dir", tmp_path / "data")
    path.write_text(job_text(data_dir=data_dir, base_url=base_url, **kwargs), encoding="utf-8")
    return path


def load(path: Path, token: str, **overrides: Any) -> JobConfig:
    return load_job(path, env={TOKEN_ENV: token}).with_overrides(**overrides)


@cache
def seeded_logs(logs_per_day: int, days: int, seed: int) -> tuple[dict[str, Any], ...]:
    """`days` days of generated logs from D0, made once per session for each set of arguments (the
    generator is deterministic, and the emulator copies what it is given into its own store)."""
    return tuple(generate_logs(logs_per_day * days, seed=seed, start=D0, end=D0 + days * DAY))


@contextmanager
def emulator(
    logs_per_day: int = 60,
    days: int = 4,
    *,
    gateway_id: str = "test-gateway",
    seed: int = 7,
    **settings: Any,
) -> Iterator[RunningEmulator]:
    """The emulator over real HTTP, with `days` days of logs from D0 and no rate limit to speak of."""
    logs = seeded_logs(logs_per_day, days, seed)
    config = EmulatorSettings(rate_limit_requests=FAST, **settings)
    with running_emulator(
        settings=config, logs=logs, account_id=ACCOUNT, gateway_id=gateway_id
    ) as emu:
        yield emu


def log_ids(logs_per_day: int = 60, days: int = 4, *, seed: int = 7) -> list[str]:
    """The ids `emulator()` seeds with the same arguments, oldest first."""
    return [str(entry["id"]) for entry in seeded_logs(logs_per_day, days, seed)]


def drop_csv(job: JobConfig, name: str, rows: dict[str, int]) -> Path:
    """An analyst's CSV file (log_id -> feedback) in the job's inbox."""
    inbox = job.labels.csv.inbox
    inbox.mkdir(parents=True, exist_ok=True)
    lines = ["log_id,feedback,reason", *(f"{i},{fb},analyst" for i, fb in rows.items())]
    path = inbox / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def admin(emu: RunningEmulator, route: str) -> Any:
    with urllib.request.urlopen(f"{emu.admin_url}/{route}") as response:  # loopback only
        return json.loads(response.read())


def patches_by_log(emu: RunningEmulator) -> dict[str, int]:
    """How many PATCHes the emulator accepted for each log id."""
    by_log: dict[str, int] = admin(emu, "patches")["by_log"]
    return by_log
