"""`aigw-feedback check JOB`: what it says for a healthy gateway, a read-only token, an unknown
gateway and a gateway whose newest log is days old, and how few requests it spends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner, Result

from pipeline.cli import cli
from pipeline.emulator import EmulatorSettings, RunningEmulator, generate_logs, running_emulator
from tests.runkit import ACCOUNT, FAST, TOKEN_ENV, admin, write_job


def invoke(args: list[str], token: str) -> Result:
    return CliRunner().invoke(cli, args, env={TOKEN_ENV: token})


@contextmanager
def gateway(newest_days_ago: float = 0.1) -> Iterator[RunningEmulator]:
    """The emulator with 300 logs over the three days before its newest log."""
    end = datetime.now(UTC) - timedelta(days=newest_days_ago)
    logs = generate_logs(300, seed=5, start=end - timedelta(days=3), end=end)
    with running_emulator(
        EmulatorSettings(rate_limit_requests=FAST),
        logs=logs,
        account_id=ACCOUNT,
        gateway_id="test-gateway",
    ) as emu:
        yield emu


def spent(emu: RunningEmulator) -> int:
    stats = admin(emu, "stats")
    return int(stats["total_requests"])


def test_a_healthy_gateway_passes_in_two_requests_and_writes_nothing(tmp_path: Path) -> None:
    """Token accepted, gateway found, logs counted, nightly cost priced; 2 requests, no PATCH,
    no run or state recorded."""
    with gateway() as emu:
        job = write_job(tmp_path, emu.base_url)
        result = invoke(["check", str(job)], emu.edit_token)
        requests, patches = spent(emu), admin(emu, "patches")["by_log"]
    assert result.exit_code == 0, result.output
    assert "ok   token accepted" in result.stdout
    assert "ok   gateway found" in result.stdout
    assert "logs held: 300" in result.stdout
    assert "a nightly run at this volume" in result.stdout
    assert "the first PATCH proves it" in result.stdout
    assert requests == 2 and patches == {}
    # Nothing of the job's state: no state database, no run (the test job keeps the budget's
    # shared file in its data dir, which is the only file there).
    assert not (tmp_path / "data" / "state.sqlite").exists()
    assert not (tmp_path / "data" / "runs").exists()


def test_a_read_only_token_is_caught_by_the_write_probe(tmp_path: Path) -> None:
    """Without writing, a read-only token looks fine (Edit unproven); --write-probe finds it out:
    exit 3 with the permission hint, and no log changed."""
    with gateway() as emu:
        job = write_job(tmp_path, emu.base_url)
        looked = invoke(["check", str(job)], emu.read_token)
        probed = invoke(["check", str(job), "--write-probe"], emu.read_token)
        patches = admin(emu, "patches")["by_log"]
    assert looked.exit_code == 0, looked.output
    assert "Edit unproven" in looked.stdout
    assert probed.exit_code == 3, probed.output
    assert "FAIL AI Gateway Edit refused" in probed.stdout
    assert "AI Gateway Edit" in probed.stdout
    assert patches == {}


def test_the_write_probe_with_an_edit_token_changes_no_log(tmp_path: Path) -> None:
    """--write-probe with an Edit token proves the permission; the log reads back the same."""
    with gateway() as emu:
        job = write_job(tmp_path, emu.base_url)
        before = {
            i: emu.store.get(emu.account_id, emu.gateway_id, i)
            for i in emu.store.all_ids(emu.account_id, emu.gateway_id)
        }
        probed = invoke(
            ["check", str(job), "--write-probe", "--log-format", "json"], emu.edit_token
        )
        after = {i: emu.store.get(emu.account_id, emu.gateway_id, i) for i in before}
        requests = spent(emu)
    assert probed.exit_code == 0, probed.output
    data = json.loads(probed.stdout)
    assert data["edit"] == "proven" and data["requests"] == 3 == requests
    assert {k: (v or {}).get("feedback") for k, v in after.items()} == {
        k: (v or {}).get("feedback") for k, v in before.items()
    }


def test_an_unknown_gateway_is_exit_2_naming_it(tmp_path: Path) -> None:
    """A gateway id the account does not have: exit 2, the gateway named, one request spent."""
    with gateway() as emu:
        job = write_job(tmp_path, emu.base_url, gateway_id="no-such-gateway")
        result = invoke(["check", str(job)], emu.edit_token)
        requests = spent(emu)
    assert result.exit_code == 2, result.output
    assert "no-such-gateway" in result.stdout and "gateway not_found" in result.stdout
    assert requests == 1


def test_a_gateway_whose_newest_log_is_days_old_says_why_that_may_be(tmp_path: Path) -> None:
    """Newest log five days old: exit 1, and the note names the new logging and what to check."""
    with gateway(newest_days_ago=5) as emu:
        job = write_job(tmp_path, emu.base_url)
        result = invoke(["check", str(job)], emu.edit_token)
    assert result.exit_code == 1, result.output
    assert "new logging" in result.stdout and "Logs settings" in result.stdout


def test_someone_else_using_the_bucket_is_noticed(tmp_path: Path) -> None:
    """Requests made on the same token elsewhere (the dashboard, another host) show up as a note:
    fewer requests remain than check's own two explain."""
    import httpx

    with gateway() as emu:
        job = write_job(tmp_path, emu.base_url)
        headers = {"Authorization": f"Bearer {emu.edit_token}"}
        logs_url = f"{emu.base_url}/accounts/{ACCOUNT}/ai-gateway/gateways/test-gateway/logs"
        for _ in range(10):
            httpx.get(logs_url, headers=headers, params={"per_page": 1}).raise_for_status()
        result = invoke(["check", str(job), "--log-format", "json"], emu.edit_token)
    data = json.loads(result.stdout)
    assert result.exit_code == 1, result.output
    assert data["bucket"]["used_by_others"] >= 9
    assert any("used by something else" in f for f in data["findings"])
