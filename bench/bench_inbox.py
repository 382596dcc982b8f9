"""The inbox at scale: a 100k-row CSV and a 100k-row .xlsx through the CSV labeler, against the
stdlib csv module reading the same file, and against the labeler of commit `--baseline`.

    .venv/bin/python bench/bench_inbox.py [--rows 100000] [--repeat 3] [--baseline f825529]

What is timed (best of `--repeat`, in this process): `CsvLabeler.run` as a dry run would call it
(``consume=False``: read, decode, parse, check every value, join to the window's logs, account),
over an inbox holding one file: UTF-8 CSV; the same rows in Windows-1252 (not UTF-8, so the
encoding detector runs); the same rows as an .xlsx. Baselines measured in the same run: the
stdlib csv module turning the CSV's decoded text into lists of cells (the floor of any CSV
reader), and openpyxl streaming the workbook's cell values (read-only, the floor of an .xlsx
reader). The labeler of commit `--baseline` (before physical records, encoding detection and
workbooks; its `pipeline/` package taken out with `git archive` into a temporary folder and put
first on PYTHONPATH, in a subprocess) reads the same UTF-8 and Windows-1252 CSV; it has no .xlsx
reader. Ratios are against the stdlib csv module (lower is better). Files are generated first,
not timed. The machine is shared: read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

BASELINE = "f825529"  # main before this work (issue 13 items 4-5)
NOW = datetime(2026, 11, 25, 6, tzinfo=UTC)
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ids(n: int) -> list[str]:
    return [
        "01JADM" + "".join(ALPHABET[(i >> (5 * k)) & 31] for k in range(20))[::-1] for i in range(n)
    ]


def csv_text(n: int) -> str:
    words = ["up", "down", "👍", "-1", "good", "meh"]
    rows = [f"{log_id},{words[i % 6]},{i % 101},réponse {i}\n" for i, log_id in enumerate(ids(n))]
    return "log_id,feedback,score,reason\n" + "".join(rows)


def xlsx_bytes(n: int) -> bytes:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("review")
    sheet.append(["log_id", "feedback", "score", "reason"])
    words = ["up", "down", "👍", -1, "good", "meh"]
    for i, log_id in enumerate(ids(n)):
        sheet.append([log_id, words[i % 6], i % 101, f"réponse {i}"])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def best(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def labeler_seconds(path: Path, rows: int, repeat: int) -> tuple[float, int]:
    """Seconds for CsvLabeler.run over an inbox holding only `path`, and the rows it counted."""
    from pipeline.config import CsvLabelsConfig
    from pipeline.labelers.csv import CsvLabeler

    logs = pl.DataFrame({"id": ids(rows)})
    labeler = CsvLabeler(CsvLabelsConfig(inbox=path.parent), consume=False)
    counted = 0

    def run() -> None:
        nonlocal counted
        counted = int(labeler.run(logs, "bench", NOW).accounting["rows"])

    return best(repeat, run), counted


def measure_labeler(folder: Path, rows: int, repeat: int, kinds: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for kind in kinds:
        inbox = folder / f"inbox-{kind}"
        (path,) = inbox.iterdir()
        seconds, counted = labeler_seconds(path, rows, repeat)
        if counted != rows:
            raise SystemExit(f"{kind}: the labeler counted {counted} rows, not {rows}")
        out[kind] = seconds
    return out


def baseline_labeler(folder: Path, rows: int, repeat: int, commit: str) -> dict[str, float]:
    """The same measurement with the `pipeline/` package of `commit`, in a subprocess."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as old:
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", commit, "pipeline"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
        env = {**os.environ, "PYTHONPATH": old}
        args = [sys.executable, __file__, "--child", str(folder), "--rows", str(rows)]
        args += ["--repeat", str(repeat)]
        done = subprocess.run(args, env=env, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # the baseline's labeler, over the CSV files only
        print(json.dumps(measure_labeler(args.child, args.rows, args.repeat, ["utf8", "cp1252"])))
        return

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        text = csv_text(args.rows)
        files = {
            "utf8": ("labels.csv", text.encode("utf-8")),
            "cp1252": ("labels.csv", text.replace("👍", "up").encode("cp1252")),
            "xlsx": ("labels.xlsx", xlsx_bytes(args.rows)),
        }
        for kind, (name, data) in files.items():
            (folder / f"inbox-{kind}").mkdir()
            (folder / f"inbox-{kind}" / name).write_bytes(data)

        utf8 = files["utf8"][1]
        stdlib = best(
            args.repeat,
            lambda: list(csv.reader(io.StringIO(utf8.decode("utf-8"), newline=""))),
        )

        def openpyxl_values() -> None:
            from openpyxl import load_workbook

            book = load_workbook(io.BytesIO(files["xlsx"][1]), read_only=True, data_only=True)
            for sheet in book.worksheets:
                for _ in sheet.iter_rows(values_only=True):
                    pass
            book.close()

        floor_xlsx = best(args.repeat, openpyxl_values)
        now = measure_labeler(folder, args.rows, args.repeat, list(files))
        before = baseline_labeler(folder, args.rows, args.repeat, args.baseline)

    n = args.rows
    print(
        f"{n:,} rows; best of {args.repeat}; ratios against the stdlib csv module ({stdlib:.3f} s)"
    )

    def line(label: str, seconds: float) -> None:
        print(
            f"  {label:<44} {seconds:7.3f} s  {n / seconds:>10,.0f} rows/s  {seconds / stdlib:6.1f}x"
        )

    line("stdlib csv.reader, UTF-8 text", stdlib)
    line("openpyxl values, read-only (.xlsx floor)", floor_xlsx)
    line(f"labeler {args.baseline}, UTF-8 CSV", before["utf8"])
    line("labeler now, UTF-8 CSV", now["utf8"])
    line(f"labeler {args.baseline}, Windows-1252 CSV", before["cp1252"])
    line("labeler now, Windows-1252 CSV (detected)", now["cp1252"])
    line("labeler now, .xlsx", now["xlsx"])
    print(
        f"  now/before: UTF-8 {now['utf8'] / before['utf8']:.2f}x, "
        f"Windows-1252 {now['cp1252'] / before['cp1252']:.2f}x; "
        f".xlsx/openpyxl floor {now['xlsx'] / floor_xlsx:.2f}x"
    )


if __name__ == "__main__":
    main()
