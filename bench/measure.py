"""What the benchmarks measure with, in the standard library only (so a child process that runs a
baseline commit's package imports nothing of the tree being measured): peak memory, and the
baseline package itself."""

from __future__ import annotations

import resource
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, as ru_maxrss on Linux keeps the forking parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def baseline_package(commit: str, into: Path) -> Path:
    """The `pipeline/` package of `commit`, extracted into `into` (no worktree is registered)."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "pipeline"], check=True, capture_output=True
    ).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into
