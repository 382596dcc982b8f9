"""Logging for people and for schedulers. Everything goes to stderr; stdout carries the summary.

    normal   INFO lines a person can read: "13:40:01 INFO  extract: 2,950 logs in 60 requests"
    quiet    errors only (the command still prints its final summary): for cron mail
    verbose  DEBUG, logger names, and tracebacks for errors
    json     one JSON object per line (ts, level, logger, message, and any extra fields)

Every line passes through the redactor: the API token (registered with `redact`) and anything that
looks like a bearer credential are replaced with "***", whatever the format.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from pipeline.config import Secret

VERBOSITIES = ("quiet", "normal", "verbose")
FORMATS = ("text", "json")

_secrets: set[str] = set()
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_HANDLER_NAME = "aigw-feedback"


def redact(secret: Secret | str | None) -> None:
    """Never let this value appear in a log line or a printed error from now on."""
    if secret is None:
        return
    value = secret.reveal() if isinstance(secret, Secret) else secret
    if len(value) >= 4:
        _secrets.add(value)


def scrub(text: str) -> str:
    """The text with every registered secret and bearer credential replaced by ***."""
    for value in sorted(_secrets, key=len, reverse=True):
        text = text.replace(value, "***")
    return _BEARER.sub(r"\1***", text)


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
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and self.verbose:
            entry["traceback"] = self.formatException(record.exc_info)
        return scrub(json.dumps(entry, default=str, ensure_ascii=False))


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
