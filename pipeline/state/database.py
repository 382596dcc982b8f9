"""Opening the state database (state.sqlite, in the data dir) sound, or saying why it cannot be.

A connection is in WAL mode; each module that keeps state in it (journal, history, lock) creates its
tables on first use. A file that is not a sound SQLite database is set aside, never deleted, and a
new one is started (the run history is rebuilt from the run folders: `pipeline.state.recover`). A
data dir or database that cannot be opened for reasons the user must fix (permissions, a file
where the folder should be) is a DataDirError naming the path and what to do.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pipeline.errors import DataDirError
from pipeline.state.store import STATE_FILE

log = logging.getLogger(__name__)


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
    (`pipeline.state.recover.recover_runs`). Checked once per process (quick_check reads every page).
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
