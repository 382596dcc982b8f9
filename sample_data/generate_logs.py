"""Regenerate ``sample_data/logs.jsonl.gz``: 20,000 realistic AI Gateway logs over 7 days.

Deterministic: the same seed gives byte-identical output (gzip without a timestamp), so the
committed file only changes when the generator does. Usage::

    .venv/bin/python sample_data/generate_logs.py            # writes sample_data/logs.jsonl.gz
    .venv/bin/python sample_data/generate_logs.py --check    # exit 1 if the committed file is stale
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

from pipeline.emulator.seed import (
    SAMPLE_END,
    SAMPLE_LOGS_PATH,
    SAMPLE_SEED,
    SAMPLE_START,
    generate_logs,
    write_logs_file,
)

SAMPLE_SIZE = 20_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SAMPLE_LOGS_PATH)
    parser.add_argument("--n", type=int, default=SAMPLE_SIZE)
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED)
    parser.add_argument("--check", action="store_true", help="compare with --out, write nothing")
    args = parser.parse_args(argv)
    logs = generate_logs(args.n, seed=args.seed, start=SAMPLE_START, end=SAMPLE_END)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / "logs.jsonl.gz"
            write_logs_file(fresh, logs)
            same = args.out.exists() and _digest(fresh) == _digest(args.out)
        print(f"{args.out}: {'up to date' if same else 'STALE, regenerate it'}")
        return 0 if same else 1
    write_logs_file(args.out, logs)
    print(f"wrote {len(logs)} logs to {args.out} ({args.out.stat().st_size:,} bytes)")
    return 0


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":
    sys.exit(main())
