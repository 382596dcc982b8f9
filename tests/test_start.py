"""Start-up: `--help` and a run's first request do not wait for the heavy libraries.

What a user notices is the time (bench/bench_start.py measures it); tests never assert on time, so
these check its cause instead: which libraries a fresh interpreter has loaded at that moment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.extract.rows import log_row
from pipeline.schemas import LOG_SCHEMA

HEAVY = ("polars", "pyarrow", "jinja2", "openpyxl", "rich", "pygments")

# Runs the command line in this interpreter; at the first socket connect (the run's first
# request: nothing else opens a connection before it), prints the heavy libraries loaded by then
# and exits at once, so no request is sent.
_AT_FIRST_CONNECT = """
import json, os, sys
HEAVY = set(json.loads(sys.argv[1]))

def at_connect(event, args):
    if event == "socket.connect":
        print(json.dumps({"connect": str(args[1]), "loaded": sorted(HEAVY & set(sys.modules))}))
        sys.stdout.flush()
        os._exit(0)

sys.addaudithook(at_connect)
from pipeline.cli import main
sys.argv = ["aigw-feedback", *sys.argv[2:]]
main()
"""

# Runs the command line (a --help) and prints the heavy libraries loaded when it is done.
_AFTER_COMMAND = """
import json, sys
HEAVY = set(json.loads(sys.argv[1]))
from pipeline.cli import main
sys.argv = ["aigw-feedback", *sys.argv[2:]]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted((HEAVY | {"httpx"}) & set(sys.modules))), file=sys.stderr)
"""

RULES = """
[[labels.rules]]
name = "answered"
when = "success"
score = "CASE WHEN duration < 1000 THEN 90 ELSE 60 END"
"""


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter (this one has loaded everything already)."""
    return subprocess.run(
        [sys.executable, "-c", code, json.dumps(HEAVY), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "AIGW_START_TOKEN": "start-test-token-0123456789"},
    )


def _job(tmp_path: Path, *, rules: bool) -> Path:
    path = tmp_path / "job.toml"
    path.write_text(
        f"""name = "start"
[gateway]
account_id = "0123456789abcdef0123456789abcdef"
gateway_id = "start-gateway"
base_url = "http://127.0.0.1:9/client/v4"
token_env = "AIGW_START_TOKEN"
[store]
data_dir = "{tmp_path / "data"}"
[labels.csv]
inbox = "{tmp_path / "inbox"}"
{RULES if rules else ""}""",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["extract", "--help"]])
def test_help_loads_neither_httpx_nor_the_data_libraries(args: list[str]) -> None:
    """`aigw-feedback --help` (and a command's) loads click and our modules only."""
    done = _python(_AFTER_COMMAND, *args)
    assert "Usage: aigw-feedback" in done.stdout, done.stderr
    loaded = json.loads(done.stderr.strip().splitlines()[-1])
    assert not set(loaded) & {*HEAVY, "httpx"}, loaded


def test_a_run_sends_its_first_request_before_loading_polars_or_pyarrow(tmp_path: Path) -> None:
    """A run's first request (the extract's) goes out before polars, pyarrow, jinja2, openpyxl
    or rich are loaded: the later stages load them when they start."""
    job = _job(tmp_path, rules=False)
    done = _python(_AT_FIRST_CONNECT, "run", str(job), "--window", "2026-10-01", "-q")
    first = json.loads(done.stdout.strip().splitlines()[-1])  # no line: it never connected
    assert first["connect"] == "('127.0.0.1', 9)"
    assert first["loaded"] == [], first


def test_a_job_with_rules_checks_their_sql_before_the_first_request(tmp_path: Path) -> None:
    """A job's rules are checked with polars when the job file is read (a bad rule stops the run
    before any request), so polars is loaded before the first request then; the report's jinja2,
    openpyxl and rich still are not."""
    job = _job(tmp_path, rules=True)
    done = _python(_AT_FIRST_CONNECT, "run", str(job), "--window", "2026-10-01", "-q")
    first = json.loads(done.stdout.strip().splitlines()[-1])
    assert "polars" in first["loaded"]
    assert not set(first["loaded"]) & {"jinja2", "openpyxl", "rich", "pygments"}, first


def test_the_client_side_modules_import_no_data_library() -> None:
    """Importing the job config, the Logs API client, the extract, check, stage and run loads
    no polars, pyarrow, jinja2 or openpyxl (a notebook or scheduler importing them stays light)."""
    code = (
        "import json, sys\n"
        "import pipeline.config, pipeline.gateway.client, pipeline.extract, pipeline.check\n"
        "import pipeline.stage, pipeline.run, pipeline.resume\n"
        "print(json.dumps(sorted({'polars', 'pyarrow', 'jinja2', 'openpyxl'} & set(sys.modules))))"
    )
    done = _python(code)
    assert json.loads(done.stdout) == [], done.stderr


def test_every_log_schema_column_is_written_by_the_extract() -> None:
    """The extract's row converter fills every column of the logs Parquet schema (it lists the
    columns itself rather than reading the schema, which would load pyarrow before the first
    request), and a field it does not know goes to `extra`."""
    entry = {"id": "a", "created_at": "2026-10-01T00:00:00.000Z", "surprise": 1}
    row = log_row(entry, stamp=0, extracted_at=0)
    assert sorted(row) == sorted(LOG_SCHEMA.names)
    assert json.loads(row["extra"]) == {"surprise": 1}
