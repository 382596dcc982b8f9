"""Reading a job file: TOML -> the frozen dataclasses of `pipeline.config.job`.

Unknown keys are an error naming the key and the file. ``${VAR}`` in any string expands from the
environment. The API token never lives in the file: it comes from the variable named by
``gateway.token_env`` (default ``CLOUDFLARE_API_TOKEN``) or from ``gateway.token_file``, stripped of
surrounding whitespace.

``[budget] bucket`` names the rate-limit bucket several jobs share (Cloudflare's limit is per user,
across that user's tokens); left out, each token has a budget of its own. See ``BudgetConfig``.

Secrets: the token, and the values of the variables named in ``gateway.secret_env`` (say a database
password the job's environment carries), are registered with ``pipeline.redaction`` as the job is
read, so they appear in no log line, error or written file. The external labeler's command runs
without them: see ``ExternalLabelerConfig.environment``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
from pipeline.config.section import DURATION, PATH, Section
from pipeline.errors import ConfigError
from pipeline.redaction import redact
from pipeline.sqlcheck import Want, check_sql

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: Any, env: Mapping[str, str], path: Path, key: str) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in env:
                raise ConfigError(
                    f"${{{name}}} is used but the environment variable {name} is not set",
                    path=path,
                    key=key,
                )
            return env[name]

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, env, path, f"{key}.{k}" if key else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, path, key) for v in value]
    return value


def load_job(path: str | Path, env: Mapping[str, str] | None = None) -> JobConfig:
    """Read and validate a job file. Raises ConfigError naming the file and the key."""
    path = Path(path)
    env = os.environ if env is None else env
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("job file not found", path=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=path) from None
    raw = _expand(raw, env, path, "")
    return _build(raw, path, env)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _variable_name(section: Section, key: str, name: object, env: Mapping[str, str]) -> str:
    """`name` if it can be an environment variable's name; else an error that does not show it.

    The usual slip is to paste the token itself where its variable's name belongs. Such a value
    must not be echoed, so it is registered as a secret and the error only says what is wrong.
    """
    if isinstance(name, str) and _is_a_name(name, env):
        return name
    if isinstance(name, str):
        redact(name)
    raise ConfigError(
        f"{section.where(key)} must be the NAME of an environment variable (like "
        f"{DEFAULT_TOKEN_ENV}), not a value; the value given is not shown. Put the token in "
        "that variable, or in a file named by gateway.token_file."
    )


def _is_a_name(name: str, env: Mapping[str, str]) -> bool:
    """A variable name, not a pasted token: the name's syntax, and (unless it is set) not long,
    mixed-case and either holding digits or equal to some variable's value, as tokens are."""
    if not _NAME.fullmatch(name):
        return False
    if name in env or name.isupper() or name.islower() or len(name) < 16:
        return True
    has_digits = any(c.isdigit() for c in name)
    return not (has_digits or name in {v.strip() for v in env.values()})


def _optional_path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def _build(raw: dict[str, Any], path: Path, env: Mapping[str, str]) -> JobConfig:
    top = Section(raw, "", path)
    name = top.get("name", str, path.stem)

    gw = top.section("gateway")
    account_id = gw.get("account_id", str, env.get("CLOUDFLARE_ACCOUNT_ID"))
    if not account_id:
        raise gw.error("account_id", "is required (or set CLOUDFLARE_ACCOUNT_ID)")
    gateway_id = gw.require("gateway_id", str)
    if not re.fullmatch(r"[a-z0-9_-]{1,64}", gateway_id):
        raise gw.error("gateway_id", "must be 1-64 characters of a-z, 0-9, '_' and '-'")
    token_env = _variable_name(gw, "token_env", gw.get("token_env", str, DEFAULT_TOKEN_ENV), env)
    names = gw.get("secret_env", (list, str), [])
    names = [names] if isinstance(names, str) else names  # a value here is refused, unshown
    secret_env = tuple(_variable_name(gw, "secret_env", name, env) for name in names)
    token_file = _optional_path(gw.get("token_file", str))
    # Pasted tokens often carry a newline or spaces; a header value cannot.
    token_value = (env.get(token_env) or "").strip()
    if not token_value and token_file is not None:
        try:
            token_value = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "it is not UTF-8 text"
            raise gw.error("token_file", f"cannot read the token file: {reason}") from None
    token = Secret(token_value) if token_value else None
    secrets = tuple(Secret(env[n].strip()) for n in secret_env if env.get(n, "").strip())
    for secret in (token, *secrets):
        redact(secret)  # from here on, in no log line, printed error or written file
    gateway = GatewayConfig(
        account_id=account_id,
        gateway_id=gateway_id,
        base_url=gw.get("base_url", str, DEFAULT_BASE_URL).rstrip("/"),
        token_env=token_env,
        token_file=token_file,
        token=token,
        secret_env=secret_env,
    )
    gw.check_unknown()

    st = top.section("store")
    store = StoreConfig(**st.pick(data_dir=("data_dir", PATH)))
    st.check_unknown()

    wn = top.section("window")
    window = WindowConfig(**wn.pick(default=("default", str), lag_seconds=("lag", DURATION)))
    wn.check_unknown()

    bd = top.section("budget")
    budget = BudgetConfig(
        **bd.pick(
            requests_per_period=("requests_per_period", int),
            period_seconds=("period", DURATION),
            headroom=("headroom", (int, float)),
            concurrency=("concurrency", int),
            max_requests=("max_requests", int),
            max_duration_seconds=("max_duration", DURATION),
            shared_state=("shared_state", PATH),
            bucket=("bucket", str),
        )
    )
    if budget.bucket is not None:
        if not budget.bucket.strip():
            raise bd.error("bucket", "must name the bucket (or leave it out: one per token)")
        budget = dataclasses.replace(budget, bucket=budget.bucket.strip())
    if budget.period_seconds <= 0:
        raise bd.error("period", "must be longer than 0 s (Cloudflare's is 5m)")
    if budget.requests_per_period < 1:
        raise bd.error("requests_per_period", "must be at least 1")
    if not 0 < budget.headroom <= 1:
        raise bd.error("headroom", "must be in (0, 1]")
    if budget.concurrency < 1:
        raise bd.error("concurrency", "must be at least 1")
    bd.check_unknown()

    ex = top.section("extract")
    filters = []
    for f in ex.sections("filters"):
        key = f.require("key", str)
        operator = f.require("operator", str)
        if operator not in FILTER_OPERATORS:
            raise f.error("operator", f"must be one of {', '.join(FILTER_OPERATORS)}")
        value = f.require("value", (list, str, int, float, bool))
        values = tuple(value) if isinstance(value, list) else (value,)
        filters.append(ApiFilter(key=key, operator=operator, value=values))
        f.check_unknown()
    extract = ExtractConfig(filters=tuple(filters), **ex.pick(per_page=("per_page", int)))
    if not 1 <= extract.per_page <= 50:
        raise ex.error("per_page", "must be 1..50 (the API's limit)")
    ex.check_unknown()

    lb = top.section("labels")
    cs = lb.section("csv")
    csv = CsvLabelsConfig(
        **cs.pick(enabled=("enabled", bool), inbox=("inbox", PATH), join_key=("join_key", str))
    )
    cs.check_unknown()
    rules = []
    for r in lb.sections("rules"):
        rule = RuleConfig(
            name=r.require("name", str),
            when=r.require("when", str),
            **r.pick(
                feedback=("feedback", (int, str)),
                score=("score", (int, float, str)),
                reason=("reason", str),
            ),
        )
        if rule.feedback is None and rule.score is None:
            raise r.error("feedback", f"rule '{rule.name}' needs feedback or score (or both)")
        if isinstance(rule.feedback, int) and rule.feedback not in (-1, 1):
            raise r.error("feedback", "must be -1 or 1 (or an SQL expression giving one)")
        if isinstance(rule.score, int | float) and not 0 <= rule.score <= 100:
            raise r.error("score", "must be 0..100 (or an SQL expression giving one)")
        r.check_unknown()
        checks: tuple[tuple[str, object, Want], ...] = (
            ("when", rule.when, "condition"),
            ("feedback", rule.feedback, "number"),
            ("score", rule.score, "number"),
        )
        for key, text, want in checks:
            problem = check_sql(text, want) if isinstance(text, str) else None
            if problem is not None:
                raise r.error(key, f"rule '{rule.name}': {problem}")
        rules.append(rule)
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise lb.error("rules", "rule names must be unique")
    xt = lb.section("external")
    command = xt.get("command", list, [])
    if not all(isinstance(c, str) for c in command):
        raise xt.error("command", "must be a list of strings (argv)")
    external = ExternalLabelerConfig(
        enabled=xt.get("enabled", bool, bool(command)),  # a command given means: use it
        command=tuple(command),
        **xt.pick(
            name=("name", str),
            timeout_seconds=("timeout", DURATION),
            send=("send", str),
            sample_size=("sample_size", int),
            fetch_heads=("fetch_heads", bool),
        ),
        withheld_env=tuple(sorted({token_env, DEFAULT_TOKEN_ENV, *secret_env})),
        withheld_values=tuple(s for s in (token, *secrets) if s is not None),
    )
    if external.send not in ("all", "unlabeled", "sample"):
        raise xt.error("send", "must be 'all', 'unlabeled' or 'sample'")
    if external.enabled and not external.command:
        raise xt.error("command", "is required when the external labeler is enabled")
    xt.check_unknown()
    lb.check_unknown()
    labels = LabelsConfig(csv=csv, rules=tuple(rules), external=external)

    ld = top.section("load")
    given = ld.pick(
        precedence=("precedence", list),
        overwrite_existing=("overwrite_existing", list),
        stamp_metadata=("stamp_metadata", bool),
    )
    for key in ("precedence", "overwrite_existing"):
        if key in given:
            given[key] = tuple(given[key])
            bad = [v for v in given[key] if v not in SOURCES]
            if bad:
                raise ld.error(key, f"unknown source {bad[0]!r}; sources are {', '.join(SOURCES)}")
    load = LoadConfig(**given)
    ld.check_unknown()

    vf = top.section("verify")
    verify = VerifyConfig(
        **vf.pick(
            enabled=("enabled", bool),
            recheck_wait_seconds=("recheck_wait", DURATION),
            recheck_attempts=("recheck_attempts", int),
        )
    )
    vf.check_unknown()
    top.check_unknown()

    return JobConfig(
        name=name,
        path=path,
        gateway=gateway,
        store=store,
        window=window,
        budget=budget,
        extract=extract,
        labels=labels,
        load=load,
        verify=verify,
    )
