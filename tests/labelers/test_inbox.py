"""The inbox: label files applied once, moved to processed/ or rejected/, the rest left alone."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from pipeline.config import CsvLabelsConfig
from pipeline.labelers.csv import CsvLabeler
from pipeline.labelers.inbox import Manifest

NOW = datetime(2026, 11, 25, 6, tzinfo=UTC)
LOGS = pl.DataFrame({"id": ["L1", "L2", "L3", "L4"]})


def labeler(inbox: Path) -> CsvLabeler:
    return CsvLabeler(CsvLabelsConfig(inbox=inbox))


def drop(inbox: Path, name: str, text: str | bytes) -> Path:
    inbox.mkdir(parents=True, exist_ok=True)
    path = inbox / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def by_file(accounting: dict[str, object], name: str) -> dict[str, object]:
    files = accounting["by_file"]
    assert isinstance(files, list)
    return next(f for f in files if f["name"] == name)


def test_processed_files_move_out_of_the_inbox_with_a_manifest(tmp_path: Path) -> None:
    """After a run the inbox is empty; the file sits in processed/<run>/, its hash in the manifest."""
    path = drop(tmp_path, "a.csv", "log_id,feedback\nL1,up\nL2,meh\n")
    data = path.read_bytes()
    labeler(tmp_path).run(LOGS, "run-1", NOW)
    assert not path.exists()
    assert (tmp_path / "processed" / "run-1" / "a.csv").read_bytes() == data
    assert (tmp_path / "processed" / "run-1" / "a.rejects.csv").exists()
    manifest = json.loads((tmp_path / "processed" / "manifest.json").read_text())
    (entry,) = manifest["applied"].values()
    assert entry["run_id"] == "run-1" and entry["path"] == "processed/run-1/a.csv"


def test_the_same_content_dropped_again_is_reported_not_applied(tmp_path: Path) -> None:
    """Dropping yesterday's file again (even renamed) changes nothing and says so."""
    drop(tmp_path, "a.csv", "log_id,feedback\nL1,up\n")
    labeler(tmp_path).run(LOGS, "run-1", NOW)
    drop(tmp_path, "a (copy).csv", "log_id,feedback\nL1,up\n")
    out = labeler(tmp_path).run(LOGS, "run-2", NOW)
    assert out.labels.height == 0
    assert out.accounting["already_applied"] == 1 and out.accounting["files"] == 0
    report = by_file(out.accounting, "a (copy).csv")
    assert report["status"] == "already_applied" and "run-1" in str(report["detail"])
    assert not (tmp_path / "a (copy).csv").exists()


def test_an_unreadable_file_is_set_aside_and_the_others_still_apply(tmp_path: Path) -> None:
    """A binary file goes to rejected/<run>/ with a reason file; the good file is applied."""
    drop(tmp_path, "bad.csv", b"\x00\x01\x02")
    drop(tmp_path, "good.csv", "log_id,feedback\nL1,up\n")
    out = labeler(tmp_path).run(LOGS, "run-1", NOW)
    assert out.labels["log_id"].to_list() == ["L1"]
    assert out.accounting["unreadable"] == 1
    reason = tmp_path / "rejected" / "run-1" / "bad.csv.reason.txt"
    assert "binary" in reason.read_text(encoding="utf-8")


def test_rerun_of_the_same_run_sees_the_files_it_already_moved(tmp_path: Path) -> None:
    """A crash after moving files but before labels.parquet: the re-run still gets their labels."""
    drop(tmp_path, "a.csv", "log_id,feedback\nL1,up\nL2,meh\n")
    drop(tmp_path, "bad.csv", b"\x00")
    first = labeler(tmp_path).run(LOGS, "run-1", NOW)
    again = labeler(tmp_path).run(LOGS, "run-1", NOW)
    assert again.labels.equals(first.labels)
    assert again.accounting == first.accounting
    later = labeler(tmp_path).run(LOGS, "run-2", NOW)
    assert later.labels.height == 0 and later.accounting["by_file"] == []


def test_crash_between_manifest_and_move_is_resumed_without_double_apply(tmp_path: Path) -> None:
    """The manifest names the file for this run but the file is still in the inbox: apply it once."""
    path = drop(tmp_path, "a.csv", "log_id,feedback\nL1,up\n")
    labeler(tmp_path).run(LOGS, "run-1", NOW)
    moved = tmp_path / "processed" / "run-1" / "a.csv"
    shutil.move(moved, path)  # as if the move had not happened
    out = labeler(tmp_path).run(LOGS, "run-1", NOW)
    assert out.labels["log_id"].to_list() == ["L1"]
    assert out.accounting["files"] == 1 and out.accounting["already_applied"] == 0
    assert moved.exists() and not path.exists()
    assert len(Manifest.load(tmp_path).applied) == 1


def test_excel_lock_files_and_other_extensions_are_left_alone(tmp_path: Path) -> None:
    """~$a.csv (Excel's lock file), .xls and notes.txt are neither read nor moved; the .xls and
    the .txt are reported as skipped with the reason, the lock and hidden files not at all."""
    for name in ("~$a.csv", "book.xls", "notes.txt", ".hidden.csv"):
        drop(tmp_path, name, "log_id,feedback\nL1,up\n")
    out = labeler(tmp_path).run(LOGS, "r", NOW)
    reported = {f["name"]: f for f in out.accounting["by_file"]}
    assert set(reported) == {"book.xls", "notes.txt"}
    assert {f["status"] for f in reported.values()} == {"skipped"}
    assert "only .csv, .tsv and .xlsx" in reported["book.xls"]["detail"]
    assert out.accounting["files"] == 0
    assert all((tmp_path / n).exists() for n in ("~$a.csv", "book.xls", "notes.txt"))


def test_a_fixed_rejects_file_can_be_dropped_back(tmp_path: Path) -> None:
    """The rejects file keeps the original headers: fix the values, drop it in, they apply."""
    drop(tmp_path, "a.csv", "Log ID;Thumbs;Comment\nL1;meh;unsure\n")
    labeler(tmp_path).run(LOGS, "run-1", NOW)
    text = (tmp_path / "processed" / "run-1" / "a.rejects.csv").read_text(encoding="utf-8")
    drop(tmp_path, "a-fixed.csv", text.replace(";meh;", ";down;"))
    out = labeler(tmp_path).run(LOGS, "run-2", NOW)
    assert out.labels.select("log_id", "feedback", "reason").rows() == [("L1", -1, "unsure")]


def test_a_dry_run_reads_the_inbox_without_consuming_it(tmp_path: Path) -> None:
    """consume=False gives the same labels and accounting but leaves every file where it was."""
    drop(tmp_path, "a.csv", "log_id,feedback\nL1,up\nL2,meh\n")
    drop(tmp_path, "bad.csv", b"\x00")
    config = CsvLabelsConfig(inbox=tmp_path)
    peek = CsvLabeler(config, consume=False).run(LOGS, "dry", NOW)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "bad.csv"]
    assert peek.labels.select("log_id", "feedback").rows() == [("L1", 1)]
    assert peek.accounting["unreadable"] == 1 and peek.accounting["rejected"] == 1
    real = CsvLabeler(config).run(LOGS, "real", NOW)
    assert real.labels.select("log_id", "feedback").rows() == [("L1", 1)]
    assert not (tmp_path / "a.csv").exists()


# ---------------------------------------------------------------------------------------------
# Only regular files inside the inbox are read; every other entry is named with its reason


def _not_read(out: object) -> dict[str, str]:
    accounting = out.accounting  # type: ignore[attr-defined]
    return {f["name"]: f["detail"] for f in accounting["by_file"] if f["status"] == "skipped"}


def test_a_symlink_out_of_the_inbox_is_refused_never_read_or_moved(tmp_path: Path) -> None:
    """hostname.csv -> a file outside the inbox: no label from it, the link stays, it is named."""
    outside = tmp_path / "secret.txt"
    outside.write_text("log_id,feedback\nL1,up\n", encoding="utf-8")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "hostname.csv").symlink_to(outside)
    (inbox / "etc.csv").symlink_to("/etc/hostname")
    out = labeler(inbox).run(LOGS, "run-1", NOW)
    assert out.labels.height == 0 and out.accounting["files"] == 0
    skipped = _not_read(out)
    assert (
        "outside the inbox" in skipped["hostname.csv"] and str(outside) in skipped["hostname.csv"]
    )
    assert "outside the inbox" in skipped["etc.csv"]
    assert (inbox / "hostname.csv").is_symlink() and outside.exists()
    assert not (inbox / "processed" / "run-1").exists()


def test_a_fifo_a_folder_and_a_symlink_loop_are_each_named_and_never_opened(
    tmp_path: Path,
) -> None:
    """x.csv a folder, p.csv a FIFO (opening it would hang the run), a.csv <-> b.csv a loop."""
    import os

    drop(tmp_path, "good.csv", "log_id,feedback\nL1,up\n")
    (tmp_path / "x.csv").mkdir()
    os.mkfifo(tmp_path / "p.csv")
    (tmp_path / "a.csv").symlink_to(tmp_path / "b.csv")
    (tmp_path / "b.csv").symlink_to(tmp_path / "a.csv")
    out = labeler(tmp_path).run(LOGS, "run-1", NOW)
    assert out.labels["log_id"].to_list() == ["L1"]
    skipped = _not_read(out)
    assert set(skipped) == {"x.csv", "p.csv", "a.csv", "b.csv"}
    assert "folder" in skipped["x.csv"] and "FIFO" in skipped["p.csv"]
    assert "loop" in skipped["a.csv"] and "loop" in skipped["b.csv"]
    assert out.accounting["skipped"] == 4


def test_a_symlink_to_a_file_inside_the_inbox_is_not_read_twice(tmp_path: Path) -> None:
    """link.csv -> good.csv: the file is applied once, the link is named as a link."""
    drop(tmp_path, "good.csv", "log_id,feedback\nL1,up\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "good.csv")
    out = labeler(tmp_path).run(LOGS, "run-1", NOW)
    assert out.accounting["files"] == 1 and out.labels.height == 1
    assert "symbolic link" in _not_read(out)["link.csv"]


def test_a_file_that_cannot_be_opened_is_named_and_left_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Permission denied on one file: it is reported with the reason, stays, the others apply."""
    import pipeline.labelers.inbox as inbox_module

    real = inbox_module.read_regular

    def denied(path: Path) -> bytes:
        if path.name == "locked.csv":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(inbox_module, "read_regular", denied)
    drop(tmp_path, "locked.csv", "log_id,feedback\nL2,up\n")
    drop(tmp_path, "good.csv", "log_id,feedback\nL1,up\n")
    for consume in (False, True):
        out = CsvLabeler(CsvLabelsConfig(inbox=tmp_path), consume=consume).run(LOGS, "r", NOW)
        assert out.labels["log_id"].to_list() == ["L1"]
        assert "Permission denied" in _not_read(out)["locked.csv"]
    assert (tmp_path / "locked.csv").exists()
