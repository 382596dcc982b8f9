"""The run lock: one run at a time per job and gateway, held in state.sqlite.

A second run of the same job against the same gateway fails at once with LockHeldError (exit 4)
naming the holder: pid, host, start time and run id. A lock left behind by a process that died on
this host (its pid is gone, or the pid now belongs to a younger process) is taken over with a
warning. A lock held from another host cannot be checked from here: it is reported, never stolen.

The lock lives in the data dir's state.sqlite, so two runs sharing a data dir (or a state file on a
shared volume) exclude each other; two data dirs are two separate worlds.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipeline.errors import LockHeldError
from pipeline.state.database import state_db

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS run_locks (
    job           TEXT NOT NULL,
    gateway_id    TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    host          TEXT NOT NULL,
    process_start TEXT,
    started_at    TEXT NOT NULL,
    run_id        TEXT,
    token         TEXT NOT NULL,
    PRIMARY KEY (job, gateway_id)
)
"""


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or held) a job's lock."""

    job: str
    gateway_id: str
    pid: int
    host: str
    started_at: datetime
    run_id: str | None
    token: str
    process_start: str | None = None

    def describe(self) -> str:
        since = self.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        run = f", run {self.run_id}" if self.run_id else ""
        return f"pid {self.pid} on {self.host}, started {since}{run}"


_SELECT = (
    "SELECT pid, host, process_start, started_at, run_id, token FROM run_locks "
    "WHERE job = ? AND gateway_id = ?"
)


def _holder(job: str, gateway_id: str, row: tuple[object, ...]) -> LockHolder:
    return LockHolder(
        job=job,
        gateway_id=gateway_id,
        pid=int(str(row[0])),
        host=str(row[1]),
        process_start=None if row[2] is None else str(row[2]),
        started_at=datetime.fromisoformat(str(row[3])),
        run_id=None if row[4] is None else str(row[4]),
        token=str(row[5]),
    )


def process_start(pid: int) -> str | None:
    """When a process started (clock ticks since boot, Linux), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def pid_alive(pid: int, started: str | None = None) -> bool:
    """Whether the process still exists (and, when its start time is known, is the same process)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if started is not None:
        now_start = process_start(pid)
        if now_start is not None and now_start != started:
            return False  # the pid was reused by a younger process
    return True


def acquire(
    data_dir: Path,
    job: str,
    gateway_id: str,
    *,
    run_id: str | None = None,
    now: datetime | None = None,
    pid: int | None = None,
    host: str | None = None,
) -> LockHolder:
    """Take the lock for job+gateway, or raise LockHeldError naming the live holder."""
    pid = os.getpid() if pid is None else pid
    me = LockHolder(
        job=job,
        gateway_id=gateway_id,
        pid=pid,
        host=host or socket.gethostname(),
        started_at=now or datetime.now(UTC),
        run_id=run_id,
        token=secrets.token_hex(8),
        process_start=process_start(pid),
    )
    with state_db(data_dir) as db:
        db.execute(_SCHEMA)
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(_SELECT, (job, gateway_id)).fetchone()
            if row is not None:
                held = _holder(job, gateway_id, row)
                if held.host != me.host:
                    raise LockHeldError(
                        f"job {job!r} on gateway {gateway_id!r} is already running "
                        f"({held.describe()}). It runs on another host, so it cannot be checked "
                        f"from here; if that process is gone, delete its row from run_locks in "
                        f"{data_dir / 'state.sqlite'}."
                    )
                if pid_alive(held.pid, held.process_start):
                    raise LockHeldError(
                        f"job {job!r} on gateway {gateway_id!r} is already running "
                        f"({held.describe()}). Wait for it to finish; this run did nothing."
                    )
                log.warning(
                    "taking over the lock of job %s on gateway %s left by a dead process (%s)",
                    job,
                    gateway_id,
                    held.describe(),
                )
                db.execute(
                    "DELETE FROM run_locks WHERE job = ? AND gateway_id = ?", (job, gateway_id)
                )
            db.execute(
                "INSERT INTO run_locks "
                "(job, gateway_id, pid, host, process_start, started_at, run_id, token) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job,
                    gateway_id,
                    me.pid,
                    me.host,
                    me.process_start,
                    me.started_at.isoformat(),
                    me.run_id,
                    me.token,
                ),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return me


def note_run(data_dir: Path, holder: LockHolder, run_id: str) -> None:
    """Record which run the holder is working on, so a refused second run can name it."""
    with state_db(data_dir) as db:
        db.execute(
            "UPDATE run_locks SET run_id = ? WHERE job = ? AND gateway_id = ? AND token = ?",
            (run_id, holder.job, holder.gateway_id, holder.token),
        )


def release(data_dir: Path, holder: LockHolder) -> None:
    """Give the lock back (only ours: a lock taken over by someone else is left alone)."""
    with state_db(data_dir) as db:
        db.execute(_SCHEMA)
        db.execute(
            "DELETE FROM run_locks WHERE job = ? AND gateway_id = ? AND token = ?",
            (holder.job, holder.gateway_id, holder.token),
        )


def current_holder(data_dir: Path, job: str, gateway_id: str) -> LockHolder | None:
    """The recorded holder of a job's lock, alive or not (for `runs` and for tests)."""
    with state_db(data_dir) as db:
        db.execute(_SCHEMA)
        row = db.execute(_SELECT, (job, gateway_id)).fetchone()
    return None if row is None else _holder(job, gateway_id, row)


@contextmanager
def run_lock(
    data_dir: Path,
    job: str,
    gateway_id: str,
    *,
    now: datetime | None = None,
    pid: int | None = None,
    host: str | None = None,
) -> Iterator[LockHolder]:
    """Hold the job's lock for the duration of the block."""
    holder = acquire(data_dir, job, gateway_id, now=now, pid=pid, host=host)
    try:
        yield holder
    finally:
        release(data_dir, holder)
