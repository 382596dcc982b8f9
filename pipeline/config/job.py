"""What a job is: its settings as frozen dataclasses, one per section of the job file.

A field's default here is the only definition of that default: the job file reader
(`pipeline.config.jobfile`) passes on only the keys a file gives, so a section or a key left out
gets exactly these values.

`ExternalLabelerConfig.environment` reads this process's environment for the external labeler's
command (without the job's secrets); with the reader, it is the only code that reads environment
variables.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.redaction import Secret as Secret  # re-exported: where users look for it
from pipeline.redaction import is_secret

DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
DEFAULT_TOKEN_ENV = "CLOUDFLARE_API_TOKEN"
SOURCES = ("csv", "external", "rules")
FILTER_OPERATORS = ("eq", "neq", "contains", "lt", "gt")


@dataclass(frozen=True)
class GatewayConfig:
    account_id: str
    gateway_id: str
    base_url: str = DEFAULT_BASE_URL
    token_env: str = DEFAULT_TOKEN_ENV
    token_file: Path | None = None
    token: Secret | None = field(default=None, repr=False, compare=False)
    secret_env: tuple[str, ...] = ()  # variables kept from child processes and redacted everywhere

    def require_token(self) -> Secret:
        if self.token is None:
            where = f" or put it in {self.token_file}" if self.token_file else ""
            raise ConfigError(
                f"no API token: set the environment variable {self.token_env}{where}. "
                "The token needs AI Gateway Read, and Edit to write feedback."
            )
        return self.token

    @property
    def logs_path(self) -> str:
        return f"/accounts/{self.account_id}/ai-gateway/gateways/{self.gateway_id}/logs"


@dataclass(frozen=True)
class StoreConfig:
    data_dir: Path = Path("data")


@dataclass(frozen=True)
class WindowConfig:
    default: str = "yesterday"
    lag_seconds: float = 900.0  # logs can become visible a little late; wait this long past a day


@dataclass(frozen=True)
class BudgetConfig:
    """``[budget]``: the pace of every request the job sends, and the run's caps.

    ``bucket`` names the rate-limit bucket the job draws on. Cloudflare counts 1200 requests / 5
    min per *user*, across all of that user's tokens (an account-owned token has a bucket of its
    own). By default the budget is one per token (its state is keyed by a hash of the base URL and
    the token); jobs that run under different tokens of one user should name the same bucket
    (``bucket = "alice@example.com"``, any name) so that they share one budget instead of each
    taking the whole limit. Processes on one machine share a bucket's state through the SQLite
    file ``shared_state`` (default ``~/.cache/aigw-feedback/budget.sqlite``; keep it on a local
    disk: SQLite locking over network storage is unreliable). Hosts on one bucket need no shared
    file: each budget reads the server's ``Ratelimit`` headers on every answer and slows down by
    what others use.
    """

    requests_per_period: int = 1200
    period_seconds: float = 300.0
    headroom: float = 0.9
    concurrency: int = 4
    max_requests: int | None = None
    max_duration_seconds: float | None = None
    shared_state: Path | None = None  # SQLite file shared by every process on this machine
    bucket: str | None = None  # the shared bucket's name; None: one budget per token

    @property
    def rate_per_second(self) -> float:
        return self.requests_per_period * self.headroom / self.period_seconds


@dataclass(frozen=True)
class ApiFilter:
    key: str
    operator: str
    value: tuple[str | int | float | bool, ...]

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "operator": self.operator, "value": list(self.value)}


@dataclass(frozen=True)
class ExtractConfig:
    filters: tuple[ApiFilter, ...] = ()
    per_page: int = 50


@dataclass(frozen=True)
class CsvLabelsConfig:
    enabled: bool = True
    inbox: Path = Path("labels/inbox")
    join_key: str = "log_id"  # or a metadata key, e.g. "request_id"


@dataclass(frozen=True)
class RuleConfig:
    name: str
    when: str
    feedback: int | str | None = None  # constant -1/1 or an SQL expression
    score: float | str | None = None  # constant 0..100 or an SQL expression
    reason: str = ""


@dataclass(frozen=True)
class ExternalLabelerConfig:
    enabled: bool = False
    name: str = "external"
    command: tuple[str, ...] = ()
    timeout_seconds: float = 600.0
    send: str = "all"  # all | unlabeled | sample
    sample_size: int = 1000
    fetch_heads: bool = True  # GET each sent log for request_head/response_head (one request each)
    # What the command must not inherit: the token's variable, CLOUDFLARE_API_TOKEN, [gateway]
    # secret_env (names), and any variable holding the token or a secret_env value (values).
    withheld_env: tuple[str, ...] = (DEFAULT_TOKEN_ENV,)
    withheld_values: tuple[Secret, ...] = field(default=(), repr=False, compare=False)

    def environment(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment the command runs with: this process's (or `env`) without the secrets.

        A judge needs its own provider's key (OPENAI_API_KEY...), so only what the pipeline
        holds secret is withheld, not everything that looks like a credential.
        """
        env = os.environ if env is None else env
        values = {v.reveal() for v in self.withheld_values}
        return {
            name: value
            for name, value in env.items()
            if name not in self.withheld_env
            and value.strip() not in values
            and not is_secret(value)
        }


@dataclass(frozen=True)
class LabelsConfig:
    csv: CsvLabelsConfig = CsvLabelsConfig()
    rules: tuple[RuleConfig, ...] = ()
    external: ExternalLabelerConfig = ExternalLabelerConfig()


@dataclass(frozen=True)
class LoadConfig:
    precedence: tuple[str, ...] = SOURCES
    overwrite_existing: tuple[str, ...] = ("csv",)  # sources whose labels replace existing feedback
    stamp_metadata: bool = False


@dataclass(frozen=True)
class VerifyConfig:
    enabled: bool = True
    recheck_wait_seconds: float = 5.0
    recheck_attempts: int = 3


@dataclass(frozen=True)
class JobConfig:
    name: str
    path: Path
    gateway: GatewayConfig
    store: StoreConfig = StoreConfig()
    window: WindowConfig = WindowConfig()
    budget: BudgetConfig = BudgetConfig()
    extract: ExtractConfig = ExtractConfig()
    labels: LabelsConfig = LabelsConfig()
    load: LoadConfig = LoadConfig()
    verify: VerifyConfig = VerifyConfig()

    def with_overrides(
        self,
        *,
        data_dir: Path | None = None,
        base_url: str | None = None,
        max_requests: int | None = None,
        max_duration_seconds: float | None = None,
    ) -> JobConfig:
        """The same job with command-line overrides applied."""
        job = self
        if data_dir is not None:
            job = dataclasses.replace(job, store=StoreConfig(data_dir=data_dir))
        if base_url is not None:
            job = dataclasses.replace(
                job, gateway=dataclasses.replace(job.gateway, base_url=base_url)
            )
        if max_requests is not None:
            job = dataclasses.replace(
                job, budget=dataclasses.replace(job.budget, max_requests=max_requests)
            )
        if max_duration_seconds is not None:
            job = dataclasses.replace(
                job,
                budget=dataclasses.replace(job.budget, max_duration_seconds=max_duration_seconds),
            )
        return job
