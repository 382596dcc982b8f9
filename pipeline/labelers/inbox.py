"""The analysts' inbox folder: which entries are label files, which content was applied already,
and where each file goes once it has been read.

Each file is applied once. Before a file is used, its sha256 goes into ``processed/manifest.json``
with the run id; then the file moves to ``processed/<run_id>/``. The same content dropped again is
reported as ``already_applied`` and moved there too, not applied. A file that cannot be read at all
moves to ``rejected/<run_id>/`` with a ``.reason.txt`` beside it, and the run goes on. A re-run of the
same run (after a crash) reads again the files the manifest says that run processed, so no label is
lost and none is applied twice. A dry run (`peek`) reads the inbox in place and changes nothing
there: no manifest entry, no move.

Only regular files directly in the inbox are read. Every other entry is left where it is and
reported as ``skipped`` with its reason: a symbolic link (one pointing out of the inbox is refused
and named with its target; one that loops or dangles is named too), a folder (even one named
``x.csv``), a FIFO or socket (never opened: opening a FIFO blocks), a file of another extension, a
file that cannot be opened (permission denied: it stays, and is read once it can be). Hidden files
and Excel's ``~$`` lock files are ignored without a word.

Reading a file's rows is the caller's (`pipeline.labelers.csv`): it passes a `Reader`, and a file
the reader refuses (InputError) is set aside as unreadable.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.errors import InputError
from pipeline.labelers.csvfile import Sheets
from pipeline.state.store import write_json_atomic, write_text_atomic

EXTENSIONS = (".csv", ".tsv", ".xlsx")
MANIFEST = "manifest.json"

Reader = Callable[[bytes, str], Sheets]  # (the file's bytes, its name) -> its tables, or InputError


@dataclass
class FileReport:
    """What happened to one file in this run."""

    name: str
    sha256: str
    status: str  # applied | already_applied | unreadable | missing | skipped (not a label file)
    path: str = ""  # where the file is now, relative to the inbox
    sheet: str = ""  # a workbook's sheet: each sheet read (or not) has a report of its own
    encoding: str = ""
    delimiter: str = ""
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    labels: int = 0
    duplicates: int = 0
    superseded: int = 0
    outside_window: int = 0
    rejects_path: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["delimiter"] = {"\t": "tab"}.get(self.delimiter, self.delimiter)
        if not self.sheet:
            del out["sheet"]  # a CSV file's report is as it always was
        return out


@dataclass
class Manifest:
    """processed/manifest.json: sha256 -> how and when that content was applied, plus events
    (already_applied drops, unreadable files) so a re-run of a run can report them again."""

    path: Path
    applied: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, inbox: Path) -> Manifest:
        path = inbox / "processed" / MANIFEST
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls(path)
        except (OSError, ValueError) as exc:
            raise InputError(
                f"the inbox manifest {path} cannot be read ({exc}); restore it from a backup, or "
                "remove it to apply every file in processed/ again"
            ) from None
        return cls(path, dict(raw.get("applied", {})), list(raw.get("events", [])))

    def save(self) -> None:
        write_json_atomic({"version": 1, "applied": self.applied, "events": self.events}, self.path)

    def reports(self, run_id: str) -> list[FileReport]:
        """The files this run set aside (already applied, unreadable), as it reported them."""
        fields = FileReport.__dataclass_fields__
        return [
            FileReport(**{k: v for k, v in e.items() if k in fields})
            for e in self.events
            if e.get("run_id") == run_id
        ]


@dataclass
class Pending:
    """A label file this run applies, read into memory (moved already unless peeked at)."""

    name: str  # as dropped
    sha256: str
    rel: str  # where it is now, relative to the inbox; its file name is unique within the run
    data: bytes
    table: Sheets | None = None

    @property
    def file(self) -> str:
        return Path(self.rel).name


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _free_name(folder: Path, name: str) -> Path:
    path = folder / name
    n = 2
    while path.exists():
        stem, suffix = os.path.splitext(name)
        path = folder / f"{stem}-{n}{suffix}"
        n += 1
    return path


IGNORED_PREFIXES = (".", "~$")  # hidden files, Excel's lock files: not reported at all
OWN_FOLDERS = ("processed", "rejected")


def read_regular(path: Path) -> bytes:
    """The bytes of a regular file, opened without following a symbolic link and without waiting
    on a FIFO (in case the entry was swapped after it was looked at); OSError otherwise."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    finally:
        os.close(fd)


def _link(path: Path, inbox: Path) -> str:
    """Why a symbolic link is not read (it never is): where it points, in words."""
    try:
        target = os.readlink(path)
    except OSError as exc:
        return f"a symbolic link that cannot be read ({exc.strerror}): not followed"
    try:
        resolved = path.resolve(strict=True)
    except RuntimeError:  # Python < 3.13: "Symlink loop"
        return f"a symbolic link that loops (to {target}): not followed"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"a symbolic link that loops (to {target}): not followed"
        return f"a symbolic link to {target}, which does not exist: not followed"
    if not resolved.is_relative_to(inbox.resolve()):
        return f"a symbolic link to {resolved}, outside the inbox: refused, never read or moved"
    inside = resolved.relative_to(inbox.resolve()).as_posix()
    return f"a symbolic link to {inside} in the inbox: only regular files are read, not links"


def why_not_read(path: Path, inbox: Path) -> str | None:
    """Why an inbox entry is not read as a label file (None: it is one). Only regular files are
    read: a symbolic link (wherever it points), a folder, a FIFO, a socket or a device never is,
    and none of them is opened (opening a FIFO would wait for a writer forever)."""
    try:
        mode = path.lstat().st_mode
    except OSError as exc:
        return f"cannot be looked at ({exc.strerror})"
    if stat.S_ISLNK(mode):
        return _link(path, inbox)
    if stat.S_ISDIR(mode):
        return "a folder, not a file: labels are read from files directly in the inbox"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO), not a regular file: never opened"
    if stat.S_ISSOCK(mode):
        return "a socket, not a regular file: never opened"
    if not stat.S_ISREG(mode):
        return "a device or other special file, not a regular file: never opened"
    if path.suffix.lower() not in EXTENSIONS:
        return (
            f"{path.suffix or 'no extension'}: only "
            f"{', '.join(EXTENSIONS[:-1])} and {EXTENSIONS[-1]} files are read; save it as CSV "
            "or .xlsx"
        )
    return None


def _entries(inbox: Path) -> list[Path]:
    return sorted(
        p
        for p in inbox.iterdir()
        if not p.name.startswith(IGNORED_PREFIXES) and p.name not in OWN_FOLDERS
    )


def not_read(inbox: Path) -> list[FileReport]:
    """Entries of the inbox that are not read as label files, each with the reason, so that an
    analyst's file in the wrong format (or a link, a folder, a FIFO) is named in the run's summary
    and report, not ignored."""
    out: list[FileReport] = []
    for path in _entries(inbox):
        why = why_not_read(path, inbox)
        if why is not None:
            out.append(_skipped(path.name, why))
    return out


def _skipped(name: str, why: str) -> FileReport:
    return FileReport(name, "", "skipped", path=name, detail=f"left in the inbox: {why}")


def _inbox_files(inbox: Path) -> list[Path]:
    return [p for p in _entries(inbox) if why_not_read(p, inbox) is None]


def _take(path: Path, reports: list[FileReport]) -> bytes | None:
    """A label file's bytes; None (and the reason reported) when it cannot be opened: it stays."""
    try:
        return read_regular(path)
    except OSError as exc:
        why = f"cannot be opened ({exc.strerror or exc}); it is read once it can be"
        reports.append(_skipped(path.name, why))
        return None


def peek(inbox: Path, manifest: Manifest, reports: list[FileReport], read: Reader) -> list[Pending]:
    """The inbox files a real run would apply, read in place: no manifest entry, no move."""
    pending: list[Pending] = []
    for path in _inbox_files(inbox):
        data = _take(path, reports)
        if data is None:
            continue
        sha = _sha256(data)
        if sha in manifest.applied or any(p.sha256 == sha for p in pending):
            reports.append(FileReport(path.name, sha, "already_applied", path=path.name))
            continue
        try:
            table = read(data, path.name)
        except InputError as exc:
            reports.append(FileReport(path.name, sha, "unreadable", path.name, detail=str(exc)))
            continue
        pending.append(Pending(path.name, sha, path.name, data, table))
    return pending


def collect(
    inbox: Path,
    manifest: Manifest,
    run_id: str,
    now: datetime,
    reports: list[FileReport],
    read: Reader,
) -> list[Pending]:
    """Files this run applies: those it already took (resumed), then new ones in the inbox."""
    pending: list[Pending] = []
    for sha, entry in manifest.applied.items():
        if entry.get("run_id") != run_id:
            continue
        path = inbox / entry["path"]
        if path.exists():
            pending.append(Pending(entry["name"], sha, entry["path"], path.read_bytes()))
    taken = {p.sha256 for p in pending}
    target = inbox / "processed" / run_id
    for path in _inbox_files(inbox):
        data = _take(path, reports)
        if data is None:
            continue
        sha = _sha256(data)
        known = manifest.applied.get(sha)
        if known is not None and known.get("run_id") == run_id and sha not in taken:
            # This run recorded the file, then stopped before (or after) moving it.
            dest = inbox / known["path"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
            pending.append(Pending(known["name"], sha, known["path"], data))
            taken.add(sha)
            continue
        if known is not None or sha in taken:
            first = known or {"run_id": run_id, "name": path.name}
            detail = (
                f"the same content was applied by run {first['run_id']} "
                f"(as {first['name']}); not applied again"
            )
            reports.append(
                _set_aside(
                    path, sha, "already_applied", detail, target, inbox, manifest, run_id, now
                )
            )
            continue
        try:
            table = read(data, path.name)
        except InputError as exc:
            folder = inbox / "rejected" / run_id
            report = _set_aside(
                path, sha, "unreadable", str(exc), folder, inbox, manifest, run_id, now
            )
            write_text_atomic(
                f"{path.name} was not applied: {exc}\n",
                inbox / (report.path + ".reason.txt"),
            )
            reports.append(report)
            continue
        dest = _free_name(target, path.name)
        rel = dest.relative_to(inbox).as_posix()
        manifest.applied[sha] = {
            "name": path.name,
            "run_id": run_id,
            "path": rel,
            "applied_at": now.isoformat(),
        }
        manifest.save()  # first the manifest, then the move: a crash in between is resumable
        target.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        pending.append(Pending(path.name, sha, rel, data, table))
        taken.add(sha)
    return pending


def _set_aside(
    path: Path,
    sha: str,
    status: str,
    detail: str,
    folder: Path,
    inbox: Path,
    manifest: Manifest,
    run_id: str,
    now: datetime,
) -> FileReport:
    """Move a file that is not applied into `folder` and remember why in the manifest."""
    dest = _free_name(folder, path.name)
    rel = dest.relative_to(inbox).as_posix()
    manifest.events.append(
        {
            "name": path.name,
            "sha256": sha,
            "status": status,
            "path": rel,
            "detail": detail,
            "run_id": run_id,
            "at": now.isoformat(),
        }
    )
    manifest.save()
    folder.mkdir(parents=True, exist_ok=True)
    os.replace(path, dest)
    return FileReport(path.name, sha, status, path=rel, detail=detail)
