"""Regenerate the analysts' CSV files in ``sample_data/labels/`` and their EXPECTED.md.

    clean.csv     40 well-formed labels (comma, UTF-8): every row is accepted
    messy.csv     what analysts really send: BOM, semicolons, CRLF, header aliases, emoji and words,
                  bad values, a missing id, duplicates, a conflicting pair, a score-only row, a
                  comment spanning two lines, an old log and an unknown id
    EXPECTED.md   each file's accounting, and for messy.csv the fate of every row

Ids come from the sample's NEWEST day (the demo shifts the sample so that day is "yesterday", the
nightly window), except the deliberate old log. Each row's expected outcome is written here, by
hand, next to the row — not computed by the labeler — so tests/labelers/test_csv.py checks the
labeler against an independent statement. Deterministic: the same sample gives the same files.

    .venv/bin/python sample_data/generate_labels.py            # writes sample_data/labels/
    .venv/bin/python sample_data/generate_labels.py --check    # exit 1 if the files are stale
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.emulator.seed import SAMPLE_LOGS_PATH, read_logs_file

OUT = Path(__file__).resolve().parent / "labels"
SEED = 4242
UNKNOWN_ID = "01JZZZZZZZZZZZZZZZZZZZZZZZ"  # looks like an id; no log has it
REFUSAL_WORDS = ("can't help", "cannot assist", "not able to help", "as an ai")


@dataclass(frozen=True)
class Row:
    cells: list[str]
    expect: str  # label | duplicate | superseded | a rejection reason code
    why: str
    outside_window: bool = False


def _kind(log: dict[str, Any]) -> str:
    head = str(log.get("response_head") or "").lower()
    if log.get("status_code", 200) != 200:
        return "error"
    if any(w in head for w in REFUSAL_WORDS):
        return "refusal"
    return "ok"


def pick(logs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(newest day's logs in a seeded random order, logs of the day four days before that)."""
    days = sorted({log["created_at"][:10] for log in logs})
    newest = sorted((x for x in logs if x["created_at"][:10] == days[-1]), key=lambda x: x["id"])
    old = sorted((x for x in logs if x["created_at"][:10] == days[-5]), key=lambda x: x["id"])
    rng = random.Random(SEED)
    rng.shuffle(newest)
    return newest, old


def clean_rows(logs: list[dict[str, Any]]) -> list[list[str]]:
    rng = random.Random(SEED + 1)
    rows = []
    for log in logs:
        kind = _kind(log)
        if kind == "refusal":
            rows.append([log["id"], "-1", str(rng.randint(0, 20)), "refused a fair request"])
        elif kind == "error":
            rows.append([log["id"], "-1", "", "provider error, user got nothing"])
        elif rng.random() < 0.15:
            rows.append([log["id"], "-1", str(rng.randint(10, 40)), "wrong answer"])
        else:
            score = str(rng.randint(70, 100)) if rng.random() < 0.7 else ""
            rows.append([log["id"], "1", score, "helpful"])
    return rows


def messy_rows(ids: list[str], old_id: str) -> list[Row]:
    a, b, c, d, e, f, g, h, i, j, k, l_, m, n, o, q, r = ids
    return [
        Row(
            [a, "👍", "", "great answer"],
            "duplicate",
            "an identical row comes later (that one counts)",
        ),
        Row([b, "Thumbs Down", "", ""], "label", "words, any case"),
        Row([c, "good", "90", ""], "label", "good + score"),
        Row([d, "BAD", "15%", ""], "label", "score with %"),
        Row([e, "+1", "72,5", ""], "label", "decimal comma"),
        Row([f, "", "85%", "only a score"], "label", "a score alone is a label"),
        Row([g, "👎🏽", "", ""], "label", "emoji with a skin tone"),
        Row([h, "positive", "", "first line\nsecond line"], "label", "comment spans two lines"),
        Row([], "", "blank line: not a row"),
        Row([i, "meh", "", ""], "bad_feedback", "not a feedback value"),
        Row([j, "0", "", "neutral?"], "bad_feedback", "0 is 'not evaluated', not a label"),
        Row([k, "up", "150", ""], "bad_score", "score over 100"),
        Row([l_, "", "high", ""], "bad_score", "score is not a number"),
        Row(["", "down", "", "who?"], "missing_key", "no log id"),
        Row([m, "", "", "forgot the label"], "no_label", "neither feedback nor score"),
        Row(["01J ABC", "up", "", ""], "bad_log_id", "space inside the id"),
        Row([n, "down", "", "note", "stray cell"], "too_many_fields", "5 cells, header has 4"),
        Row([a, "👍", "", "great answer"], "label", "identical to the first row"),
        Row([o, "up", "", ""], "superseded", "a later row says down for the same log"),
        Row(
            [old_id, "down", "", "old log, four days earlier"],
            "label",
            "outside the nightly window: kept, the plan looks it up",
            outside_window=True,
        ),
        Row(
            [UNKNOWN_ID, "up", "", "typo'd id"],
            "label",
            "ids are not checked here (could be an old log): the plan reports it not_found",
            outside_window=True,
        ),
        Row([o, "down", "", "changed my mind"], "label", "later row wins"),
        Row([q, "negative", "10", ""], "label", "word + score"),
        Row([r, "thumbs_up", "", ""], "label", "underscore form"),
        Row(["", "", "", ""], "", "only delimiters: not a row"),
    ]


def render_messy(rows: list[Row]) -> tuple[bytes, list[tuple[int, Row]]]:
    """The file's bytes (BOM, ';', CRLF) and the line on which each row starts."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow([" CF-AIG-Log-ID ", "Rating", "Score", "Comment"])
    placed = []
    for row in rows:
        line = buffer.getvalue().count("\n") + 1
        if row.cells:
            writer.writerow(row.cells)
        else:
            buffer.write("\r\n")
        placed.append((line, row))
    return b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"), placed


def render_clean(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["log_id", "feedback", "score", "reason"])
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def expected_md(clean: list[list[str]], placed: list[tuple[int, Row]]) -> str:
    rows = [(line, r) for line, r in placed if r.expect]
    rejected = Counter(
        r.expect for _, r in rows if r.expect not in ("label", "duplicate", "superseded")
    )
    outcome = Counter(r.expect for _, r in rows if r.expect in ("label", "duplicate", "superseded"))
    accepted = sum(outcome.values())
    outside = sum(r.outside_window for _, r in rows if r.expect == "label")
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(rejected.items()))
    lines = [
        "# Analysts' sample CSV files: expected accounting",
        "",
        "Generated by `sample_data/generate_labels.py` (do not edit by hand). Each file is applied",
        "on its own or together: their log ids do not overlap, so the numbers do not depend on order.",
        "Invariants: rows = accepted + rejected; accepted = labels + duplicates + superseded.",
        "Rule for several rows naming one log: the last word wins (the later row in a file, the later",
        "file by name in a run); earlier rows with the same label are duplicates, with a different",
        "label superseded. Row numbers are line numbers in the file (the header is line 1).",
        "",
        "| file | rows | accepted | rejected | labels | duplicates | superseded | outside window |",
        "|---|---|---|---|---|---|---|---|",
        f"| clean.csv | {len(clean)} | {len(clean)} | 0 | {len(clean)} | 0 | 0 | 0 |",
        f"| messy.csv | {len(rows)} | {accepted} | {sum(rejected.values())} | {outcome['label']} "
        f"| {outcome['duplicate']} | {outcome['superseded']} | {outside} |",
        "",
        f"messy.csv rejected by reason: {reasons}.",
        "",
        "messy.csv is UTF-8 with a BOM, `;`-separated, CRLF line ends, header",
        "`CF-AIG-Log-ID ;Rating;Score;Comment` (aliases for log_id, feedback, score, reason).",
        "",
        "| line | log id | feedback | score | outcome | why |",
        "|---|---|---|---|---|---|",
    ]
    for line, row in placed:
        cells = row.cells + [""] * 3
        shown = cells[0] if len(cells[0]) < 12 else cells[0][:10] + "…"
        if not row.expect:
            lines.append(f"| {line} | | | | (not a row) | {row.why} |")
            continue
        kind = row.expect if row.expect in ("label", "duplicate", "superseded") else "rejected"
        out = kind if kind != "rejected" else f"rejected: {row.expect}"
        if row.outside_window:
            out += " (outside window)"
        lines.append(f"| {line} | `{shown}` | {cells[1]} | {cells[2]} | {out} | {row.why} |")
    return "\n".join(lines) + "\n"


def build() -> dict[str, bytes]:
    logs = list(read_logs_file(SAMPLE_LOGS_PATH))
    newest, old = pick(logs)
    clean = clean_rows(newest[:40])
    messy_ids = [x["id"] for x in newest[40:57]]
    content, placed = render_messy(messy_rows(messy_ids, old[0]["id"]))
    return {
        "clean.csv": render_clean(clean),
        "messy.csv": content,
        "EXPECTED.md": expected_md(clean, placed).encode("utf-8"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the files, write none")
    args = parser.parse_args(argv)
    files = build()
    if args.check:
        stale = [
            n
            for n, data in files.items()
            if not (OUT / n).exists() or (OUT / n).read_bytes() != data
        ]
        print("sample_data/labels: " + ("STALE: " + ", ".join(stale) if stale else "up to date"))
        return 1 if stale else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (OUT / name).write_bytes(data)
        print(f"wrote {OUT / name} ({len(data):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
