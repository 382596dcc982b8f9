"""Start-up time: `--help`, `run --help` and a run's first request, this tree against a baseline.

    .venv/bin/python bench/bench_start.py [--n 9] [--baseline cd7b681]

Each figure is the median of N fresh processes (the minimum beside it), the two trees taking
turns so that a change in the machine's load falls on both:

- ``python -c pass``: the interpreter and site-packages alone, the floor under every row;
- ``aigw-feedback --help`` and ``aigw-feedback run --help``: until the process exits;
- ``run: first request``: from starting ``aigw-feedback run JOB --window 2026-10-01 -q`` to the
  moment the emulator receives the run's first request (the extract's first list call); the
  process is then killed, so the rest of the run is not timed. The emulator serves real HTTP on
  127.0.0.1 (a free port) from a thread of this process. Once with a job with two rules (their
  SQL is checked when the job file is read) and once with a job without rules.

Bytecode is cached for both trees as for an installed package (in a temporary folder, warmed by
one untimed round). The baseline is commit ``--baseline``'s `pipeline/` package, taken out with
`git archive` into a temporary folder and put first on PYTHONPATH (this tree's on PYTHONPATH
likewise), run by the same `aigw-feedback` script. Beside each wall time, the CPU seconds the
process used (less swayed by the machine's load). Bounded: 5 x 2 x (N + 1) processes, each killed
after 30 s at most, and one or a few requests per run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from measure import baseline_package  # noqa: E402

from pipeline.emulator import EmulatorSettings, generate_logs, running_emulator  # noqa: E402

BASELINE = "cd7b681"  # before start-up was looked at (issue 11, item 5)
SCRIPT = Path(sys.executable).parent / "aigw-feedback"
TOKEN_ENV = "AIGW_BENCH_TOKEN"
DAY = datetime(2026, 10, 1, tzinfo=UTC)
TIMEOUT_S = 30.0

Measure = Callable[[dict[str, str]], tuple[float, float]]  # a tree's environment -> wall, CPU

RULES = """
[[labels.rules]]
name = "provider-error"
when = "status_code >= 500"
feedback = -1
[[labels.rules]]
name = "answered"
when = "success"
score = "CASE WHEN duration < 1000 THEN 90 ELSE 60 END"
"""


class FirstRequest:
    """The emulator's clock, which notes when it is first read after `arm()`: the emulator reads
    its clock for its rate limit as each API request comes in, so that is the first request's
    arrival (perf_counter, comparable with the bench's own start times)."""

    def __init__(self) -> None:
        self.at: float | None = None
        self.seen = threading.Event()

    def arm(self) -> None:
        self.at = None
        self.seen.clear()

    def __call__(self) -> float:
        if self.at is None and not self.seen.is_set():
            self.at = time.perf_counter()
            self.seen.set()
        return time.time()


@dataclass
class Row:
    """One measured command: (wall seconds, CPU seconds) per process, per tree."""

    name: str
    samples: dict[str, list[tuple[float, float]]] = field(
        default_factory=lambda: {"base": [], "this": []}
    )


def job_file(folder: Path, base_url: str, gateway_id: str, *, rules: bool) -> Path:
    """A job against the emulator with its data dir in `folder`."""
    path = folder / ("rules.toml" if rules else "plain.toml")
    path.write_text(
        f"""name = "bench"
[gateway]
account_id = "0123456789abcdef0123456789abcdef"
gateway_id = "{gateway_id}"
base_url = "{base_url}"
token_env = "{TOKEN_ENV}"
[store]
data_dir = "data"
[labels.csv]
inbox = "inbox"
{RULES if rules else ""}""",
        encoding="utf-8",
    )
    return path


def _reap(child: subprocess.Popen[bytes]) -> tuple[int, float]:
    """Wait for `child` (blocking: a wait with a timeout polls every 50 ms and would round every
    figure up to that); its exit status and the CPU seconds it used (user + system)."""
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, usage.ru_utime + usage.ru_stime


def until_exit(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(seconds from starting `command` to its exit, its CPU seconds); a watchdog kills it."""
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL)
    watchdog = threading.Timer(TIMEOUT_S, child.kill)
    watchdog.start()
    try:
        code, cpu = _reap(child)
    finally:
        watchdog.cancel()
    if code != 0:
        raise RuntimeError(f"{command} exited with {code}")
    return time.perf_counter() - started, cpu


def until_first_request(
    command: list[str], env: dict[str, str], cwd: Path, probe: FirstRequest
) -> tuple[float, float]:
    """(seconds from starting `command` to the emulator's first request, the CPU seconds it used
    until it was killed, right after that request)."""
    probe.arm()
    started = time.perf_counter()
    child = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        while not probe.seen.wait(0.05):
            if child.poll() is not None:
                assert child.stderr is not None
                raise RuntimeError(f"{command} ended before any request: {child.stderr.read()!r}")
            if time.perf_counter() - started > TIMEOUT_S:
                raise RuntimeError(f"{command}: no request in {TIMEOUT_S:.0f} s")
    finally:
        child.kill()
    _, cpu = _reap(child)
    assert child.stderr is not None
    child.stderr.close()
    assert probe.at is not None
    return probe.at - started, cpu


def run_folder(root: Path) -> Path:
    """A fresh working folder for one run (the job's data dir and inbox are relative to it), so
    every sample is a first run: nothing interrupted to resume, no watermark."""
    folder = Path(tempfile.mkdtemp(dir=root))
    (folder / "inbox").mkdir()
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=9, help="processes per command and tree")
    parser.add_argument("--baseline", default=BASELINE, help="the commit to compare with")
    args = parser.parse_args()

    probe = FirstRequest()
    logs = generate_logs(200, seed=1, start=DAY, end=DAY.replace(day=2))
    settings = EmulatorSettings(rate_limit_requests=1_000_000)
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_emulator(settings, logs=logs, clock=probe) as emu,
    ):
        root = Path(tmp)
        trees = {"base": baseline_package(args.baseline, root / "baseline"), "this": REPO}
        # Bytecode cached, as an installed package has it: this environment may forbid writing
        # it (PYTHONDONTWRITEBYTECODE), and every module compiled from source at each start would
        # add ~50 ms that no user pays. The cache goes to a temporary folder; one round warms it.
        plain = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        envs = {
            name: {
                **plain,
                "PYTHONPATH": str(path),
                "PYTHONPYCACHEPREFIX": str(root / "pycache"),
                TOKEN_ENV: emu.edit_token,
            }
            for name, path in trees.items()
        }
        jobs = {
            rules: job_file(root, emu.base_url, emu.gateway_id, rules=rules)
            for rules in (True, False)
        }
        python = sys.executable
        run = [str(SCRIPT), "run"]
        window = ["--window", DAY.date().isoformat(), "-q"]

        def first_request(rules: bool) -> Measure:
            def measure(env: dict[str, str]) -> tuple[float, float]:
                command = [*run, str(jobs[rules]), *window]
                return until_first_request(command, env, run_folder(root), probe)

            return measure

        measures: list[tuple[Row, Measure]] = [
            (Row("python -c pass"), lambda env: until_exit([python, "-c", "pass"], env, root)),
            (
                Row("aigw-feedback --help"),
                lambda env: until_exit([str(SCRIPT), "--help"], env, root),
            ),
            (Row("aigw-feedback run --help"), lambda env: until_exit([*run, "--help"], env, root)),
            (Row("run: first request (2 rules)"), first_request(True)),
            (Row("run: first request (no rules)"), first_request(False)),
        ]
        for _row, measure in measures:  # the warm-up round: writes the bytecode cache
            for tree in ("base", "this"):
                measure(envs[tree])
        for _ in range(args.n):
            for row, measure in measures:
                for tree in ("base", "this"):
                    row.samples[tree].append(measure(envs[tree]))

    print(f"start-up, seconds: median (min) of {args.n} processes each, baseline {args.baseline}")
    print("wall: to exit, or to the first request; CPU: what the process itself used (user +")
    print("system; the first-request rows until the kill right after it), less swayed by load")
    head = f"{'':30} {'baseline wall':>14} {'this tree':>14} {'ratio':>6}"
    print(f"{head}   {'baseline CPU':>14} {'this tree':>14} {'ratio':>6}")
    for row, _ in measures:
        cells = []
        for kind in (0, 1):
            base = [sample[kind] for sample in row.samples["base"]]
            this = [sample[kind] for sample in row.samples["this"]]
            ratio = statistics.median(this) / statistics.median(base)
            cells.append(f"{_cell(base):>14} {_cell(this):>14} {ratio:>6.2f}")
        print(f"{row.name:30} {cells[0]}   {cells[1]}")


def _cell(seconds: list[float]) -> str:
    return f"{statistics.median(seconds):.3f} ({min(seconds):.3f})"


if __name__ == "__main__":
    main()
