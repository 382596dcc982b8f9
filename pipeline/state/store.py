"""Where everything lives in the data dir, and atomic writes (opening the state database:
`pipeline.state.database`).

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
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import DamagedFileError, StageError, UnknownRunError
from pipeline.redaction import scrub, scrub_table
from pipeline.timefmt import iso, parse_iso
from pipeline.window import Window

if TYPE_CHECKING:
    import pyarrow as pa

    from pipeline.config import JobConfig

STATE_FILE = "state.sqlite"


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
    import pyarrow.parquet as pq  # here, not at the top: a run's first request need not wait for it

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


def write_parquet_stream_atomic(
    pieces: Iterable[pa.Table | pa.RecordBatch],
    schema: pa.Schema,
    path: Path,
    *,
    dictionary: list[str] | None = None,
    statistics: list[str] | None = None,
) -> int:
    """`write_parquet_atomic` for data that arrives in pieces (a streamed query's batches): each
    piece is cast to `schema`, scrubbed and appended, so only one piece is in memory at a time.
    Returns the rows written; no piece at all writes an empty file of `schema`. `dictionary`
    and `statistics` name the columns that get a dictionary encoding and min/max statistics
    (default: all; a column of unique ids gains nothing from a dictionary, and each costs time)."""
    import pyarrow as pa  # here, not at the top: a run's first request need not wait for it
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    rows = 0
    try:
        os.fchmod(fd, _file_mode())
        os.close(fd)
        with pq.ParquetWriter(
            tmp,
            schema,
            compression="zstd",
            use_dictionary=True if dictionary is None else dictionary,
            write_statistics=True if statistics is None else statistics,
        ) as writer:
            for piece in pieces:
                table = (
                    pa.Table.from_batches([piece]) if isinstance(piece, pa.RecordBatch) else piece
                )
                writer.write_table(scrub_table(table.select(schema.names).cast(schema)))
                rows += table.num_rows
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return rows


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


def write_bytes_atomic(data: bytes, path: Path) -> Path:
    """Write a binary file (a spreadsheet) under a temporary name, then rename it. Not scrubbed:
    scrub its text before encoding it (``scrub_table``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
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
    """A new run folder with its run.json (a fresh id if two runs started in the same second drew
    the same random suffix: the folder is created exclusively, never shared)."""
    now = now or datetime.now(UTC)
    runs_dir(data_dir).mkdir(parents=True, exist_ok=True)
    while True:
        run_id = new_run_id(job, now)
        paths = RunPaths(runs_dir(data_dir) / run_id)
        try:
            paths.root.mkdir()
            break
        except FileExistsError:
            continue
    info = RunInfo(run_id, job, gateway_id, window, now, paths)
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
    import pyarrow as pa  # here, not at the top: a run's first request need not wait for it
    import pyarrow.parquet as pq

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
