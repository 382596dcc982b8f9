"""Log output: readable by default, JSON for schedulers, quiet for cron, never the token."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from pipeline.config import Secret
from pipeline.logging_setup import configure_logging, redact, scrub

TOKEN = "cf-live-0123456789abcdefTOKEN"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    yield out
    configure_logging(stream=io.StringIO())  # detach from the test's buffer


def test_a_registered_token_never_reaches_a_log_line(stream: io.StringIO) -> None:
    """Even if code logged the token by mistake, the line shows *** instead."""
    redact(Secret(TOKEN))
    configure_logging(stream=stream)
    logging.getLogger("pipeline.test").info("sending with %s", TOKEN)
    logging.getLogger("pipeline.test").warning("header Authorization: Bearer %s", "abcdefgh12345")
    text = stream.getvalue()
    assert TOKEN not in text and "abcdefgh12345" not in text
    assert text.count("***") == 2


def test_json_format_is_one_object_per_line_with_extra_fields(stream: io.StringIO) -> None:
    """--log-format json: each line parses, with ts, level, logger, message and extras."""
    configure_logging(fmt="json", stream=stream)
    logging.getLogger("pipeline.run").info("run %s ok", "r1", extra={"run_id": "r1"})
    [line] = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["message"] == "run r1 ok"
    assert entry["level"] == "info" and entry["logger"] == "pipeline.run"
    assert entry["run_id"] == "r1" and entry["ts"].endswith("+00:00")


def test_quiet_shows_errors_only_and_verbose_shows_debug(stream: io.StringIO) -> None:
    """--quiet is for cron: warnings and info stay out; --verbose adds debug lines."""
    log = logging.getLogger("pipeline.test")
    configure_logging(verbosity="quiet", stream=stream)
    log.info("info")
    log.warning("warning")
    log.error("error")
    assert stream.getvalue().splitlines()[0].endswith("error")
    assert len(stream.getvalue().splitlines()) == 1
    configure_logging(verbosity="verbose", stream=stream)
    log.debug("debug detail")
    assert "pipeline.test: debug detail" in stream.getvalue()


def test_tracebacks_only_with_verbose(stream: io.StringIO) -> None:
    """An exception logged without --verbose is its message, not a traceback; neither shows the
    token."""
    redact(Secret(TOKEN))  # as the CLI does; not left to another test (workers split a module)
    configure_logging(stream=stream)
    log = logging.getLogger("pipeline.test")
    try:
        raise ValueError(f"bad thing near {TOKEN}")
    except ValueError:
        log.exception("stage failed")
    assert "Traceback" not in stream.getvalue()
    configure_logging(verbosity="verbose", stream=stream)
    try:
        raise ValueError(f"bad thing near {TOKEN}")
    except ValueError:
        log.exception("stage failed")
    assert "Traceback" in stream.getvalue()
    assert TOKEN not in stream.getvalue()


def test_scrub_leaves_ordinary_text_alone() -> None:
    """Redaction replaces credentials only."""
    assert scrub("extract: 2,846 logs, 57 requests") == "extract: 2,846 logs, 57 requests"


def test_json_lines_scrub_secrets_in_structured_fields_too(stream: io.StringIO) -> None:
    """A token inside an `extra` field (a counts object, a note) is *** in the JSON line."""
    redact(Secret(TOKEN))
    configure_logging(fmt="json", stream=stream)
    extra = {"stage": "label", "run_id": "r1", "counts": {"labels": 3}, "note": f"saw {TOKEN}"}
    logging.getLogger("pipeline.label").info("label done", extra=extra)
    entry = json.loads(stream.getvalue())
    assert entry["note"] == "saw ***" and entry["counts"] == {"labels": 3}
    assert list(entry)[:4] == ["ts", "level", "logger", "message"]
