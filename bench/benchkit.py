"""What the load and run benchmarks share: the scaled emulator, in a process of its own, and the
baseline a user would write from Cloudflare's guide with the official `cloudflare` SDK.

The scaled configuration (issue 11): the rate limit 60 requests per 3 s (Cloudflare's 1200 per
5 min is 4/s; this is 20/s, so a benchmark runs in about a minute), a 10 s block after going over,
30 ms latency, over real HTTP on loopback. The emulator runs in its own Python process (uvicorn),
so its work does not share a GIL with the client being measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pipeline.config import JobConfig, load_job  # noqa: E402
from pipeline.emulator.seed import generate_logs  # noqa: E402
from pipeline.window import Window  # noqa: E402

LIMIT, WINDOW_S, BLOCK_S, LATENCY_MS = 60, 3.0, 10.0, 30.0
DAY = Window(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 2, tzinfo=UTC))


def scaled_settings(**more: Any) -> dict[str, Any]:
    """The scaled emulator settings (names as `EmulatorSettings.of` takes them)."""
    return {
        "rate_limit_requests": LIMIT,
        "rate_limit_window": WINDOW_S,
        "block_seconds": BLOCK_S,
        "latency_ms": LATENCY_MS,
        **more,
    }


def day_logs(n: int, seed: int = 42) -> list[dict[str, Any]]:
    """One day (DAY) of generated logs, none with feedback yet (so every label is a change)."""
    logs = generate_logs(n, seed=seed, start=DAY.start, end=DAY.end)
    for log in logs:
        log["feedback"], log["score"] = None, None
    return logs


_SERVE = """
import json, sys
from pipeline.emulator.server import running_emulator
from pipeline.emulator.settings import EmulatorSettings
args = json.loads(sys.argv[1])
with open(args["logs"], encoding="utf-8") as f:
    logs = json.load(f)
with running_emulator(EmulatorSettings.of(**args["settings"]), logs=logs) as emu:
    print(json.dumps({
        "base_url": emu.base_url, "admin_url": emu.admin_url, "account_id": emu.account_id,
        "gateway_id": emu.gateway_id, "edit_token": emu.edit_token, "read_token": emu.read_token,
    }), flush=True)
    sys.stdin.read()  # serve until the parent closes our stdin
"""


@dataclass(frozen=True)
class Emulator:
    """An emulator process: where it listens and its tokens."""

    base_url: str
    admin_url: str
    account_id: str
    gateway_id: str
    edit_token: str
    read_token: str

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.admin_url}/stats") as answer:  # loopback only
            data: dict[str, Any] = json.loads(answer.read())
        return data


def job_for(tmp: Path, emu: Emulator, budget: str, rest: str = "") -> JobConfig:
    """A job file in `tmp` aimed at `emu` (its data dir and budget state in `tmp`), with the
    `[budget]` lines `budget` and any further TOML `rest`, loaded with the emulator's edit token."""
    path = tmp / "job.toml"
    path.write_text(
        f'name = "bench"\n[gateway]\naccount_id = "{emu.account_id}"\n'
        f'gateway_id = "{emu.gateway_id}"\nbase_url = "{emu.base_url}"\n'
        f'[store]\ndata_dir = "{tmp / "data"}"\n'
        f'[budget]\n{budget}\nshared_state = "{tmp / "budget.sqlite"}"\n{rest}',
        encoding="utf-8",
    )
    return load_job(path, env={"CLOUDFLARE_API_TOKEN": emu.edit_token})


@contextmanager
def emulator(logs: list[dict[str, Any]], **settings: Any) -> Iterator[Emulator]:
    """The emulator in its own process, seeded with `logs`, with `settings` (EmulatorSettings.of)."""
    with tempfile.TemporaryDirectory() as tmp:
        seed = Path(tmp) / "logs.json"
        seed.write_text(json.dumps(logs), encoding="utf-8")
        args = json.dumps({"logs": str(seed), "settings": settings})
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVE, args],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                raise RuntimeError("the emulator process did not start")
            yield Emulator(**json.loads(line))
        finally:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(timeout=30)


@dataclass(frozen=True)
class SdkRun:
    """What the SDK loop did; requests and 429s as the emulator counted them."""

    seconds: float
    listed: int
    labels: int
    written: int
    lost: int
    requests: int
    rate_limited: int

    @property
    def per_label(self) -> float:
        return self.requests / self.labels if self.labels else 0.0


def sdk_loop(emu: Emulator, window: Window, choose: Callable[[Any], int | None]) -> SdkRun:
    """The loop Cloudflare's guide suggests, with the official SDK: list the window's logs
    (auto-paging), then for each label ``logs.edit(...)`` and ``logs.get(...)`` to check it, one
    after the other. `choose(log)` gives a log's feedback (-1/1) or None for no label."""
    import cloudflare

    client = cloudflare.Cloudflare(api_token=emu.edit_token, base_url=emu.base_url)
    before = emu.stats()
    t0 = time.perf_counter()
    filters = [
        {"key": "created_at", "operator": "gt", "value": [_iso_ms(window.start, -1)]},
        {"key": "created_at", "operator": "lt", "value": [_iso_ms(window.end, 0)]},
    ]
    # `filters=` would be sent in a form the API ignores; extra_query is the working way.
    listed = list(
        client.ai_gateway.logs.list(
            emu.gateway_id,
            account_id=emu.account_id,
            per_page=50,
            extra_query={"filters": json.dumps(filters)},
        )
    )
    labels = [(log.id, fb) for log in listed if (fb := choose(log)) is not None]
    written = lost = 0
    for log_id, feedback in labels:
        try:
            client.ai_gateway.logs.edit(
                log_id, account_id=emu.account_id, gateway_id=emu.gateway_id, feedback=feedback
            )
            back = client.ai_gateway.logs.get(
                log_id, account_id=emu.account_id, gateway_id=emu.gateway_id
            )
            written += 1
            if getattr(back, "feedback", feedback) != feedback:
                lost += 1
        except cloudflare.APIError as exc:
            lost += 1
            if lost <= 3:
                print(f"  SDK loop: {log_id}: {type(exc).__name__}: {exc}"[:160])
    seconds = time.perf_counter() - t0
    client.close()
    after = emu.stats()
    return SdkRun(
        seconds,
        len(listed),
        len(labels),
        written,
        lost,
        int(after["total_requests"]) - int(before["total_requests"]),
        int(after["rate_limited"]) - int(before["rate_limited"]),
    )


def _iso_ms(moment: datetime, offset_ms: int) -> str:
    shifted = moment.timestamp() * 1000 + offset_ms
    text = datetime.fromtimestamp(shifted / 1000, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")
