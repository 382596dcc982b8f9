"""Job files (TOML) -> frozen dataclasses. The only package that reads environment variables.

A job file has these sections, all optional except ``[gateway]``::

    name = "nightly"                      # default: the file's stem
    [gateway]  account_id, gateway_id, base_url, token_env, token_file, secret_env
    [store]    data_dir
    [window]   default, lag
    [budget]   requests_per_period, period, headroom, concurrency,
               max_requests, max_duration, shared_state, bucket
    [extract]  filters = [{key, operator, value}], per_page
    [labels.csv]        enabled, inbox, join_key
    [[labels.rules]]    name, when, feedback, score, reason
    [labels.external]   enabled, name, command, timeout, send, sample_size, fetch_heads
    [load]     precedence, overwrite_existing, stamp_metadata
    [verify]   enabled, recheck_wait, recheck_attempts

    job       the settings: one frozen dataclass per section, whose fields hold the defaults
    jobfile   reading a file into them: ${VAR}, the token and secrets, each section checked
    section   typed access to one TOML table (unknown keys), durations and paths

Import from here (``from pipeline.config import JobConfig, load_job``); the modules are where the
code lives.
"""

from __future__ import annotations

from pipeline.config.job import (
    DEFAULT_BASE_URL,
    DEFAULT_TOKEN_ENV,
    FILTER_OPERATORS,
    SOURCES,
    ApiFilter,
    BudgetConfig,
    CsvLabelsConfig,
    ExternalLabelerConfig,
    ExtractConfig,
    GatewayConfig,
    JobConfig,
    LabelsConfig,
    LoadConfig,
    RuleConfig,
    Secret,
    StoreConfig,
    VerifyConfig,
    WindowConfig,
)
from pipeline.config.jobfile import load_job
from pipeline.config.section import parse_duration

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TOKEN_ENV",
    "FILTER_OPERATORS",
    "SOURCES",
    "ApiFilter",
    "BudgetConfig",
    "CsvLabelsConfig",
    "ExternalLabelerConfig",
    "ExtractConfig",
    "GatewayConfig",
    "JobConfig",
    "LabelsConfig",
    "LoadConfig",
    "RuleConfig",
    "Secret",
    "StoreConfig",
    "VerifyConfig",
    "WindowConfig",
    "load_job",
    "parse_duration",
]
