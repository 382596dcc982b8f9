"""Job files (TOML) -> frozen dataclasses. The only module that reads environment variables.

A job file has these sections, all optional except ``[gateway]``::

    name = "nightly"                      # default: the file's stem
    [gateway]  account_id, gateway_id, base_url, token_env, token_file, secret_env
    [store]    data_dir
    [window]   default, lag
    [budget]   requests_per_period, period_seconds, headroom, concurrency,
               max_requests, max_duration, shared_state
    [extract]  filters = [{key, operator, value}], per_page
    [labels.csv]        enabled, inbox, join_key
    [[labels.rules]]    name, when, feedback, score, reason
    [labels.external]   enabled, name, command, timeout, send, sample_size, fetch_heads
    [load]     precedence, overwrite_existing, stamp_metadata
    [verify]   enabled, recheck_wait, recheck_attempts

Unknown keys are an error naming the key and the file. ``${VAR}`` in any string expands from the
environment. The API token never lives in the file: it comes from the variable named by
``gateway.token_env`` (default ``CLOUDFLARE_API_TOKEN``) or from ``gateway.token_file``, stripped of
surrounding whitespace.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.redaction import Secret as Secret  # re-exported: where users look for it
from pipeline.redaction import is_secret, redact
from pipeline.sqlcheck import Want, check_sql

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
    requests_per_period: int = 1200
    period_seconds: float = 300.0
    headroom: float = 0.9
    concurrency: int = 4
    max_requests: int | None = None
    max_duration_seconds: float | None = None
    shared_state: Path | None = None  # SQLite file shared by every process using the same token

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


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: str | float | int) -> float:
    """'90s', '15m', '2h', '1d', '250ms' or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value!r}")
        return float(value)
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"not a duration: {value!r} (try '90s', '15m', '2h' or '1d')")
    return float(match.group(1)) * _UNITS[match.group(2)]


# ---------------------------------------------------------------------------------------------
# Reading a job file


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Section:
    """Typed access to one TOML table; every key read is marked, the rest are unknown keys."""

    def __init__(self, data: Mapping[str, Any], prefix: str, path: Path) -> None:
        self._data = data
        self._prefix = prefix
        self._path = path
        self._seen: set[str] = set()

    def _key(self, name: str) -> str:
        return f"{self._prefix}.{name}" if self._prefix else name

    def where(self, name: str) -> str:
        """'gateway.token_env in jobs/nightly.toml', for messages that put the key first."""
        return f"{self._key(name)} in {self._path}"

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(message, path=self._path, key=self._key(name))

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self._seen.add(name)
        if name not in self._data:
            return default
        value = self._data[name]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise self.error(name, f"expected a number, got {value!r}")
        if not isinstance(value, kind):
            names = (
                kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            )
            raise self.error(name, f"expected {names}, got {type(value).__name__} {value!r}")
        return value

    def require(self, name: str, kind: type | tuple[type, ...]) -> Any:
        if name not in self._data:
            self._seen.add(name)
            raise self.error(name, "is required")
        return self.get(name, kind)

    def duration(self, name: str, default: float | None) -> float | None:
        raw = self.get(name, (str, int, float))
        if raw is None:
            return default
        try:
            return parse_duration(raw)
        except ValueError as exc:
            raise self.error(name, str(exc)) from None

    def pick(self, **spec: tuple[str, Any]) -> dict[str, Any]:
        """The given keys as dataclass field values: ``field=(key, kind)``; kind ``DURATION`` or
        ``PATH`` converts. Keys the file leaves out are left out, so defaults come from the
        dataclass fields alone (one definition per default)."""
        out: dict[str, Any] = {}
        for field_name, (key, kind) in spec.items():
            self._seen.add(key)
            if key not in self._data:
                continue
            if kind is DURATION:
                out[field_name] = self.duration(key, None)
            elif kind is PATH:
                out[field_name] = Path(self.get(key, str)).expanduser()
            else:
                out[field_name] = self.get(key, kind)
        return out

    def section(self, name: str) -> _Section:
        raw = self.get(name, dict, {})
        return _Section(raw, self._key(name), self._path)

    def sections(self, name: str) -> list[_Section]:
        raw = self.get(name, list, [])
        out = []
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                raise self.error(name, f"entry {i + 1} must be a table")
            out.append(_Section(item, f"{self._key(name)}[{i + 1}]", self._path))
        return out

    def check_unknown(self) -> None:
        unknown = sorted(set(self._data) - self._seen)
        if unknown:
            known = ", ".join(sorted(self._seen)) or "none"
            raise self.error(unknown[0], f"unknown key (known keys here: {known})")


DURATION = object()  # pick(): a duration like "90s", "5m" -> seconds
PATH = object()  # pick(): a path, ~ expanded


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


def _variable_name(section: _Section, key: str, name: object, env: Mapping[str, str]) -> str:
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
    top = _Section(raw, "", path)
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
        )
    )
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
