"""Where everything lives in the data dir, atomic writes, and the state database.

    <data_dir>/
      logs/gateway=<id>/date=YYYY-MM-DD/part-0.parquet   extract output (Hive-partitioned)
      runs/<run_id>/run.json                             the run's identity: job, window
      runs/<run_id>/labels.parquet, plan.parquet, ...    stage hand-overs (see RunPaths)
      state.sqlite                                       journal, runs, watermarks, locks (WAL)

Every stage reads and writes through these helpers, so moving the data dir to object storage or the
state to a shared database stays a change to this module.

Every file written here passes the one redaction of known secrets (pipeline.redaction): text and
JSON files whole, Parquet files in their string columns. Files get the permissions the process's
umask asks for (tempfile's 0600 would make reports unreadable to the team that reads them).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import sqlite3
import tempfile
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import DamagedFileError, DataDirError, StageError, UnknownRunError
from pipeline.redaction import scrub, scrub_table
from pipeline.timefmt import iso, parse_iso
from pipeline.window import Window

if TYPE_CHECKING:
    from pipeline.config import JobConfig

STATE_FILE = "state.sqlite"
log = logging.getLogger(__name__)


def _umask_now() -> int:
    """The process's umask, read without changing it (Linux), else by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _UMASK_AT_IMPORT


def _umask_at_import() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _umask_at_import()


def _file_mode() -> int:
    return 0o666 & ~_umask_now()


# ---------------------------------------------------------------------------------------------
# Atomic writes


def write_parquet_atomic(table: pa.Table, path: Path) -> Path:
    """Write a Parquet file under a temporary name in the same folder, then rename it into place.

    String columns are scrubbed of known secrets (a labeler's `reason` may quote one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        os.close(fd)
        pq.write_table(scrub_table(table), tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(text: str, path: Path) -> Path:
    """Write a text file (scrubbed of known secrets) under a temporary name, then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(scrub(text))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(data: Any, path: Path) -> Path:
    """JSON through write_text_atomic, so it is scrubbed too."""
    return write_text_atomic(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", path)


# ---------------------------------------------------------------------------------------------
# Logs (extract output)


def logs_root(data_dir: Path, gateway_id: str) -> Path:
    return data_dir / "logs" / f"gateway={gateway_id}"


def partition_dir(data_dir: Path, gateway_id: str, day: date) -> Path:
    return logs_root(data_dir, gateway_id) / f"date={day.isoformat()}"


def replace_partition(partition: Path, staged: Path) -> None:
    """Swap a fully written staging folder in for a partition folder (rename, not copy)."""
    partition.parent.mkdir(parents=True, exist_ok=True)
    old = partition.with_name(f".{partition.name}.old-{secrets.token_hex(4)}")
    if partition.exists():
        os.replace(partition, old)
    os.replace(staged, partition)
    shutil.rmtree(old, ignore_errors=True)


def log_files(data_dir: Path, gateway_id: str, days: list[date] | None = None) -> list[Path]:
    """The Parquet files of the given days (all days if None) that exist."""
    root = logs_root(data_dir, gateway_id)
    if days is None:
        return sorted(root.glob("date=*/*.parquet"))
    files: list[Path] = []
    for day in days:
        files.extend(sorted(partition_dir(data_dir, gateway_id, day).glob("*.parquet")))
    return files


# ---------------------------------------------------------------------------------------------
# Runs


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def info(self) -> Path:
        return self.root / "run.json"

    @property
    def labels(self) -> Path:
        return self.root / "labels.parquet"

    @property
    def chosen(self) -> Path:
        """The combined label per log, chosen by precedence."""
        return self.root / "chosen.parquet"

    @property
    def label_analysis(self) -> Path:
        return self.root / "label_analysis.json"

    @property
    def plan(self) -> Path:
        return self.root / "plan.parquet"

    @property
    def verify(self) -> Path:
        return self.root / "verify.parquet"

    def report(self, fmt: str) -> Path:
        return self.root / f"report.{fmt}"

    @property
    def outcome(self) -> Path:
        """How the run's latest attempt ended: its cause, requests and seconds (pipeline.run)."""
        return self.root / "outcome.json"

    def stage_outputs(self, stage: str) -> tuple[Path, ...]:
        """The Parquet files a stage hands over, which a resumed run must be able to read."""
        return {
            "label": (self.labels, self.chosen),
            "plan": (self.plan,),
            "verify": (self.verify,),
        }.get(stage, ())

    def stage_result(self, stage: str) -> Path:
        """Each stage's result object, as JSON, for the report and for resumed runs."""
        return self.root / f"{stage}.result.json"


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    job: str
    gateway_id: str
    window: Window
    created_at: datetime
    paths: RunPaths

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "job": self.job,
            "gateway_id": self.gateway_id,
            "window": {"start": iso(self.window.start), "end": iso(self.window.end)},
            "created_at": iso(self.created_at),
        }


def runs_dir(data_dir: Path) -> Path:
    return data_dir / "runs"


def new_run_id(job: str, now: datetime) -> str:
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{job}-{secrets.token_hex(2)}"


def create_run(
    data_dir: Path, job: str, gateway_id: str, window: Window, now: datetime | None = None
) -> RunInfo:
    """A new run folder with its run.json."""
    now = now or datetime.now(UTC)
    run_id = new_run_id(job, now)
    paths = RunPaths(runs_dir(data_dir) / run_id)
    info = RunInfo(run_id, job, gateway_id, window, now, paths)
    paths.root.mkdir(parents=True, exist_ok=False)
    write_json_atomic(info.to_json(), paths.info)
    return info


def start_run(job: JobConfig, window: Window, now: datetime | None = None) -> RunInfo:
    """A new run of this job over `window` (for the stage commands; `run` records its own)."""
    return create_run(job.store.data_dir, job.name, job.gateway.gateway_id, window, now=now)


def open_run(data_dir: Path, run_id: str) -> RunInfo:
    """An existing run, or UnknownRunError (a usage error) saying how to list runs."""
    paths = RunPaths(runs_dir(data_dir) / run_id)
    unknown = UnknownRunError(
        f"no run {run_id!r} in {data_dir}; `aigw-feedback runs --data-dir {data_dir}` lists them"
    )
    if not run_id or run_id.startswith(".") or "/" in run_id or os.sep in run_id:
        raise unknown  # not a run id: never a path outside runs/
    try:
        raw = json.loads(paths.info.read_text(encoding="utf-8"))
        window = Window(parse_iso(raw["window"]["start"]), parse_iso(raw["window"]["end"]))
        return RunInfo(
            run_id=raw["run_id"],
            job=raw["job"],
            gateway_id=raw["gateway_id"],
            window=window,
            created_at=parse_iso(raw["created_at"]),
            paths=paths,
        )
    except (FileNotFoundError, NotADirectoryError):
        raise unknown from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DamagedFileError(
            f"{paths.info} cannot be read ({type(exc).__name__}); the run history in "
            f"{data_dir / STATE_FILE} can rebuild it: run the job again"
        ) from None


def rewrite_run_info(
    data_dir: Path, run_id: str, job: str, gateway_id: str, window: Window, created_at: datetime
) -> RunInfo:
    """Write a run's run.json again (it was damaged) from facts kept elsewhere."""
    paths = RunPaths(runs_dir(data_dir) / run_id)
    info = RunInfo(run_id, job, gateway_id, window, created_at, paths)
    write_json_atomic(info.to_json(), paths.info)
    return info


def parquet_readable(path: Path) -> bool:
    """Whether a Parquet file exists and its footer reads (a truncated file's does not)."""
    try:
        pq.read_metadata(path)
    except (OSError, pa.ArrowException):
        return False
    return True


def require(path: Path, stage: str, run_id: str) -> Path:
    """A hand-over file from an earlier stage, or StageError naming the stage to run first."""
    if not path.exists():
        raise StageError(
            f"run {run_id} has no {path.name} yet: run `aigw-feedback {stage}` for it first"
        )
    return path


# ---------------------------------------------------------------------------------------------
# State database


@contextmanager
def state_db(data_dir: Path, *, readonly: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection to state.sqlite in WAL mode. Modules create their own tables on first use.

    ``readonly``: for commands that only look (`runs`, `report`). It never creates the data dir or
    the database, and works on a read-only data dir. A data dir or database that cannot be opened
    is a DataDirError (exit 2) naming the path and what to do, not sqlite's bare "unable to open
    database file".
    """
    conn = _open_readonly(data_dir) if readonly else _open_writable(data_dir)
    try:
        yield conn
    finally:
        conn.close()


_OPEN_FAILURES = ("unable to open", "readonly", "read-only", "permission", "disk i/o")


def _is_open_failure(exc: sqlite3.OperationalError) -> bool:
    """Permissions and paths, which the user must fix; not "database is locked" and the like."""
    return any(f in str(exc).lower() for f in _OPEN_FAILURES)


def _cannot_open(path: Path, reason: str, fix: str) -> DataDirError:
    return DataDirError(f"cannot open the state database {path}: {reason}. {fix}")


def _open_writable(data_dir: Path) -> sqlite3.Connection:
    path = data_dir / STATE_FILE
    fix = (
        f"Make the data dir {data_dir} writable by this user, or choose another with --data-dir "
        "or the job's [store] data_dir."
    )
    if data_dir.exists() and not data_dir.is_dir():
        raise _cannot_open(path, f"{data_dir} is not a folder", fix)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_open(path, f"the data dir cannot be created ({exc.strerror})", fix) from None
    if not os.access(data_dir, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.R_OK | os.W_OK)
    ):
        raise _cannot_open(path, "it is read-only for this user", fix)
    try:
        return _connect_sound(path)
    except sqlite3.OperationalError as exc:
        if not _is_open_failure(exc):
            raise
        raise _cannot_open(path, str(exc), fix) from None


_checked: set[Path] = set()  # state files this process has found sound


def _connect_sound(path: Path) -> sqlite3.Connection:
    """A connection to a state file that is a sound SQLite database.

    One that is not (truncated, overwritten, "database disk image is malformed") would make every
    later run fail, so it is set aside, renamed and never deleted, and a new one is started: each
    module re-creates its tables, and the run history is rebuilt from the run folders
    (`pipeline.state.history.recover_runs`). Checked once per process (quick_check reads every page).
    """
    for _ in range(2):
        conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if path not in _checked:
                verdict = conn.execute("PRAGMA quick_check(1)").fetchone()
                if verdict is None or verdict[0] != "ok":
                    raise sqlite3.DatabaseError(f"quick_check: {verdict}")
                _checked.add(path)
            return conn
        except sqlite3.OperationalError:
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            set_aside_damaged_state(path, str(exc))
    raise DataDirError(f"{path} could not be created as a new state database")


def set_aside_damaged_state(path: Path, why: str) -> Path:
    """Rename a damaged state database (and its -wal/-shm) aside; return the new name."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.damaged-{stamp}-{secrets.token_hex(2)}")
    for suffix in ("", "-wal", "-shm"):
        part = path.with_name(path.name + suffix)
        if part.exists():
            os.replace(part, aside.with_name(aside.name + suffix))
    log.warning(
        "the state database %s cannot be read (%s); set aside as %s, a new one is started and "
        "the run history is rebuilt from the run folders",
        path,
        why,
        aside,
    )
    return aside


def _open_readonly(data_dir: Path) -> sqlite3.Connection:
    path = data_dir / STATE_FILE
    if not path.is_file():
        raise DataDirError(
            f"no state database at {path}: nothing has run with the data dir {data_dir} yet "
            "(check --data-dir or the job's [store] data_dir)"
        )
    uri = "file:" + urllib.parse.quote(str(path.absolute())) + "?mode=ro"
    if not os.access(data_dir, os.W_OK):
        # sqlite cannot create a WAL database's -shm file here, so it can only read it as
        # immutable; nobody can be writing to it from this folder either.
        uri += "&immutable=1"
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.OperationalError as exc:
        if conn is not None:
            conn.close()
        if not _is_open_failure(exc):
            raise
        fix = f"Check that this user may read {data_dir} and {path}."
        raise _cannot_open(path, str(exc), fix) from None
    return conn
