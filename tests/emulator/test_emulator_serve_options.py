"""`aigw-feedback emulator serve` offers Cloudflare's newer behaviours as options."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
LOGS = "/accounts/0123456789abcdef0123456789abcdef/ai-gateway/gateways/demo-gateway/logs"


@pytest.mark.slow
def test_serve_with_uuid7_ids_bare_list_entries_and_both_header_families() -> None:
    """--ids uuid7 --no-list-feedback --policy-name burst --legacy-headers --account-limit: the
    served API shows each, and the second limiter answers 429 code 10040 with its Retry-After."""
    args = [
        sys.executable, "-m", "pipeline", "emulator", "serve", "--port", "0", "--generate", "20",
        "--ids", "uuid7", "--no-list-feedback", "--policy-name", "burst", "--legacy-headers",
        "--account-limit", "3", "--account-window", "60",
    ]  # fmt: skip
    proc = subprocess.Popen(
        args,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(10)]
        base_url = next(line.split()[-1] for line in lines if "base URL" in line)
        headers = {"Authorization": "Bearer demo-read-token"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=10) as client:
            first = client.get(LOGS, params={"per_page": 5})
            answers = [client.get(LOGS, params={"per_page": 1}) for _ in range(3)]
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    entries = first.json()["result"]
    assert entries and all(len(e["id"]) == 36 and e["id"] == e["id"].lower() for e in entries)
    assert all("feedback" not in e and "score" not in e for e in entries)
    assert first.headers["ratelimit-policy"].startswith('"burst"')
    assert "x-ratelimit-remaining" in first.headers
    refused = answers[-1]
    assert refused.status_code == 429
    assert refused.json()["errors"][0]["code"] == 10040
    assert refused.headers["retry-after"] == "60"
