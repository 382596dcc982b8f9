"""The emulator served over real HTTP: starts on a free loopback port, drops connections for
real, and stops leaving nothing behind; `aigw-feedback emulator serve` stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.emulator.server import running_emulator
from pipeline.emulator.settings import EmulatorSettings

REPO = Path(__file__).resolve().parents[2]
LOGS = "/accounts/0123456789abcdef0123456789abcdef/ai-gateway/gateways/demo-gateway/logs"


def test_running_emulator_serves_on_loopback_and_stops_cleanly(emulator_logs):
    """It binds 127.0.0.1 on a free port, answers, and afterwards the port and thread are gone."""
    with running_emulator(logs=emulator_logs[:10]) as emu:
        assert emu.base_url.startswith("http://127.0.0.1:") and emu.base_url.endswith("/client/v4")
        assert emu.admin_url.endswith("/__emulator")
        assert (emu.account_id, emu.gateway_id) == (
            "0123456789abcdef0123456789abcdef",
            "demo-gateway",
        )
        headers = {"Authorization": f"Bearer {emu.read_token}"}
        with httpx.Client(headers=headers) as client:
            payload = client.get(emu.logs_url).json()
        assert payload["result_info"]["total_count"] == 10
        assert emu.store.count(emu.account_id, emu.gateway_id) == 10
        url = emu.base_url
    assert not any(t.name == "aigw-emulator" for t in threading.enumerate())
    with pytest.raises(httpx.ConnectError), httpx.Client() as client:
        client.get(url)


def test_two_emulators_run_side_by_side():
    """Each emulator gets its own port and its own empty default gateway."""
    with running_emulator() as one, running_emulator() as two:
        assert one.base_url != two.base_url
        for emu in (one, two):
            response = httpx.get(
                emu.logs_url, headers={"Authorization": f"Bearer {emu.edit_token}"}
            )
            assert response.json()["result_info"]["total_count"] == 0


def test_a_dropped_connection_is_a_transport_error_and_the_server_lives_on(emulator_server):
    """Over HTTP a dropped request gets no answer at all (httpx.TransportError); the next works."""
    headers = {"Authorization": f"Bearer {emulator_server.edit_token}"}
    with httpx.Client(headers=headers) as client:
        emulator_server.control.configure(drop_rate=1.0)
        with pytest.raises(httpx.TransportError):
            client.get(emulator_server.logs_url)
        emulator_server.control.configure(drop_rate=0.0)
        assert client.get(emulator_server.logs_url).status_code == 200
    assert emulator_server.control.snapshot()["requests"]["list"] == {"dropped": 1, "200": 1}


def test_admin_routes_over_http(emulator_server):
    """The admin routes work over HTTP without a token."""
    with httpx.Client(base_url=emulator_server.admin_url) as client:
        assert client.post("/config", json={"rate_limit_requests": 2}).status_code == 200
        assert client.get("/stats").json()["total_requests"] == 0


def test_emulator_serve_help_shows_an_example():
    """`aigw-feedback emulator serve --help` documents the options with an example."""
    result = CliRunner().invoke(cli, ["emulator", "serve", "--help"])
    assert result.exit_code == 0
    for text in ("--port", "--generate", "--error-rate", "--churn-insert", "Examples:"):
        assert text in result.output


def test_emulator_serve_refuses_seed_and_generate_together():
    """--seed and --generate are exclusive: a usage error, exit code 2."""
    result = CliRunner().invoke(
        cli, ["emulator", "serve", "--generate", "3", "--seed", str(Path(__file__))]
    )
    assert result.exit_code == 2
    assert "not both" in result.output


@contextmanager
def served(*options: str) -> Iterator[tuple[str, list[str], dict[str, Any]]]:
    """`aigw-feedback emulator serve --port 0 OPTIONS` in a process: its base URL and first lines;
    SIGTERM on leaving, its return code and output in the dict."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "emulator", "serve", "--port", "0", *options],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    ended: dict[str, Any] = {}
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(10)]
        base_url = next(line.split()[-1] for line in lines if "base URL" in line)
        yield base_url, lines, ended
        proc.send_signal(signal.SIGTERM)
        ended["out"], ended["err"] = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    ended["returncode"] = proc.returncode


@pytest.mark.slow
def test_emulator_serve_prints_its_url_and_stops_on_sigterm(tmp_path):
    """The command prints base URL and tokens, serves, and exits 0 on SIGTERM."""
    with served("--generate", "20") as (base_url, lines, ended):
        assert any("demo-edit-token" in line for line in lines)
        response = httpx.get(
            f"{base_url}{LOGS}", headers={"Authorization": "Bearer demo-read-token"}
        )
        assert response.json()["result_info"]["total_count"] == 20
    assert ended["returncode"] == 0, ended["err"]
    assert "emulator stopped" in ended["out"]


@pytest.mark.slow
def test_serve_with_uuid7_ids_bare_list_entries_and_both_header_families() -> None:
    """--ids uuid7 --no-list-feedback --policy-name burst --legacy-headers --account-limit: the
    served API shows each, and the second limiter answers 429 code 10040 with its Retry-After."""
    options = [
        "--generate", "20", "--ids", "uuid7", "--no-list-feedback", "--policy-name", "burst",
        "--legacy-headers", "--account-limit", "3", "--account-window", "60",
    ]  # fmt: skip
    headers = {"Authorization": "Bearer demo-read-token"}
    with (
        served(*options) as (base_url, _, _ended),
        httpx.Client(base_url=base_url, headers=headers, timeout=10) as client,
    ):
        first = client.get(LOGS, params={"per_page": 5})
        answers = [client.get(LOGS, params={"per_page": 1}) for _ in range(3)]
    entries = first.json()["result"]
    assert entries and all(len(e["id"]) == 36 and e["id"] == e["id"].lower() for e in entries)
    assert all("feedback" not in e and "score" not in e for e in entries)
    assert first.headers["ratelimit-policy"].startswith('"burst"')
    assert "x-ratelimit-remaining" in first.headers
    refused = answers[-1]
    assert refused.status_code == 429
    assert refused.json()["errors"][0]["code"] == 10040
    assert refused.headers["retry-after"] == "60"


def test_settings_reject_nonsense():
    """Impossible settings fail fast with a message naming the setting."""
    cases = [
        ({"error_rate": 1.5}, "error_rate"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"rate_limit_requests": 0}, "rate_limit_requests"),
        ({"tokens": {"t": "admin"}}, "token scope"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            EmulatorSettings(**bad)
