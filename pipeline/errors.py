"""One exception tree for the whole pipeline. Only the CLI turns these into messages and exit codes.

    PipelineError                    root: everything the pipeline raises on purpose
    ├── UsageError                   bad arguments or job file (exit 2)
    │   ├── ConfigError              a job file key or value is wrong; names the key and the file
    │   ├── UnknownRunError          no such run id in the data dir; says how to list runs
    │   ├── DataDirError             the data dir or its state database cannot be opened or
    │   │                            written; names the path and what to do
    │   └── GatewayNotFoundError     the API has no such account or gateway (404 on its logs)
    ├── AuthError                    403 / bad token: the token lacks a permission (exit 3)
    ├── LockHeldError                another run holds the job's lock (exit 4)
    ├── ApiError                     the Logs API answered with an error
    │   ├── BadRequestError          400: the API's own message
    │   ├── NotFoundError            404 code 7002
    │   └── RetriableError           worth another attempt
    │       ├── RateLimitedError     429 code 971; carries retry_after seconds
    │       ├── ServerError          5xx
    │       └── TransportError       connection dropped, timeout, DNS...
    ├── InputError                   a data file or labeler output cannot be used at all
    ├── StageError                   a stage's input is missing (e.g. label before extract)
    │   └── DamagedFileError         a run's file exists but cannot be read; names it and what to do
    └── BudgetExhausted              the run's max_requests / max_duration is used up: stop cleanly,
                                     the rest stays pending for the next run

Messages say what happened, to what, and what to do next. None ever contains the API token.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Root of every error the pipeline raises on purpose."""

    exit_code = 1


class UsageError(PipelineError):
    exit_code = 2


class ConfigError(UsageError):
    """A job file is wrong. The message names the file and the key."""

    def __init__(self, message: str, *, path: object = None, key: str | None = None) -> None:
        where = ""
        if path is not None and key:
            where = f"{path}: key '{key}': "
        elif path is not None:
            where = f"{path}: "
        elif key:
            where = f"key '{key}': "
        super().__init__(where + message)
        self.path = path
        self.key = key


class UnknownRunError(UsageError):
    """A run id that the data dir has no folder for."""


class DataDirError(UsageError):
    """The data dir (or state.sqlite in it) cannot be created, opened or written."""


class GatewayNotFoundError(UsageError):
    """The Logs API answered 404 for the gateway's log collection: the job names a gateway (or an
    account) that does not exist. A configuration error, not a missing log."""


class AuthError(PipelineError):
    exit_code = 3


class LockHeldError(PipelineError):
    exit_code = 4


class ApiError(PipelineError):
    """The Logs API answered with an error."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class BadRequestError(ApiError):
    pass


class NotFoundError(ApiError):
    pass


class RetriableError(ApiError):
    """A retry may succeed."""


class RateLimitedError(RetriableError):
    """A 429. ``code`` 971 is Cloudflare's global limit (1200 / 5 min per user or account-owned
    token); other codes (10040 ...) are other limiters, each with its own Retry-After."""

    def __init__(
        self, message: str, *, retry_after: float, status: int = 429, code: int | None = 971
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class ServerError(RetriableError):
    pass


class TransportError(RetriableError):
    pass


class InputError(PipelineError):
    """A data file or a labeler's output cannot be used at all."""


class StageError(PipelineError):
    """A stage cannot start: what it needs from an earlier stage is missing."""


class DamagedFileError(StageError):
    """A file in a run folder (run.json, a hand-over) exists but cannot be read."""


class BudgetExhausted(PipelineError):
    """The run's request or time cap is reached. Not a failure: the rest stays pending."""
