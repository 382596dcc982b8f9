"""Logging for people and for schedulers. Everything goes to stderr; stdout carries the summary.

    normal   INFO lines a person can read: "13:40:01 INFO  extract: 2,950 logs in 60 requests"
    quiet    errors only (the command still prints its final summary): for cron mail
    verbose  DEBUG, logger names, and tracebacks for errors
    json     one JSON object per line (ts, level, logger, message, and any extra fields)

Structured fields: pass them as ``extra``; a JSON line carries each as a top-level key, a text line
shows only the message. Use these names, so that a scheduler can filter on them::

    log.info("%s", line, extra={"stage": "load", "run_id": run.run_id, "counts": {"patched": 412}})

    stage      extract | label | plan | load | verify | report | run
    run_id     the run the line is about
    job        the job's name
    counts     the stage's figures, a flat object of numbers (what its summary line says in prose)
    status     a run's or a stage's status (ok, partial, failed...)
    exit_code  on the last line of a command

(``extra`` may not use a LogRecord attribute's name: message, name, msg, args, levelname...)

Every line passes through the redactor (pipeline.redaction): the API token and the job's other
secrets, and anything that looks like a bearer credential, are replaced with "***", whatever the
format.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from pipeline.redaction import redact, scrub

__all__ = ["FORMATS", "VERBOSITIES", "configure_logging", "json_line", "redact", "scrub"]

VERBOSITIES = ("quiet", "normal", "verbose")
FORMATS = ("text", "json")

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_HANDLER_NAME = "aigw-feedback"


def json_line(
    level: str,
    message: str,
    *,
    logger: str,
    fields: Mapping[str, Any] | None = None,
    created: float | None = None,
) -> str:
    """One JSON log line (ts, level, logger, message, then the fields), scrubbed of secrets."""
    when = datetime.fromtimestamp(created, UTC) if created is not None else datetime.now(UTC)
    entry: dict[str, Any] = {**(fields or {})}
    entry.update(
        ts=when.isoformat(timespec="milliseconds"), level=level, logger=logger, message=message
    )
    entry = {k: entry[k] for k in ("ts", "level", "logger", "message")} | entry
    return scrub(json.dumps(entry, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    def __init__(self, *, verbose: bool) -> None:
        fmt = "%(asctime)s %(levelname)-5s %(name)s: %(message)s" if verbose else None
        super().__init__(fmt or "%(asctime)s %(levelname)-5s %(message)s", datefmt="%H:%M:%S")
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        if not self.verbose and record.exc_info:
            # Tracebacks only with --verbose; otherwise the exception's own sentence is enough.
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        return scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    def __init__(self, *, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _STANDARD and not key.startswith("_")
        }
        if record.exc_info and self.verbose:
            fields["traceback"] = self.formatException(record.exc_info)
        return json_line(
            record.levelname.lower(),
            record.getMessage(),
            logger=record.name,
            fields=fields,
            created=record.created,
        )


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (as logging's last resort handler does)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure_logging(
    *, verbosity: str = "normal", fmt: str = "text", stream: TextIO | None = None
) -> None:
    """Set up the `pipeline` logger (and quiet httpx's per-request lines). Safe to call again."""
    if verbosity not in VERBOSITIES:
        raise ValueError(f"verbosity must be one of {VERBOSITIES}")
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}")
    verbose = verbosity == "verbose"
    level = {"quiet": logging.ERROR, "normal": logging.INFO, "verbose": logging.DEBUG}[verbosity]
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        JsonFormatter(verbose=verbose) if fmt == "json" else TextFormatter(verbose=verbose)
    )
    for name in ("pipeline", "httpx", "httpcore", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
            logger.removeHandler(old)
    root = logging.getLogger("pipeline")
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    # httpx logs every request at INFO; the URL carries no token, but it is noise except when debugging.
    for name in ("httpx", "httpcore"):
        other = logging.getLogger(name)
        other.setLevel(logging.DEBUG if verbose else logging.WARNING)
        other.addHandler(handler)
        other.propagate = False
