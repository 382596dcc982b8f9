"""Job files: what a user writes, what they get back when it is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Secret, load_job, parse_duration
from pipeline.errors import ConfigError
from pipeline.redaction import scrub

MINIMAL = """
[gateway]
account_id = "0123456789abcdef0123456789abcdef"
gateway_id = "my-gateway"
"""


def write(tmp_path: Path, text: str, name: str = "job.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_job_gets_documented_defaults(tmp_path: Path) -> None:
    """A job with only [gateway] runs with Cloudflare's limits and the default precedence."""
    job = load_job(write(tmp_path, MINIMAL), env={})
    assert job.name == "job"
    assert job.gateway.base_url == "https://api.cloudflare.com/client/v4"
    assert job.budget.requests_per_period == 1200
    assert job.budget.period_seconds == 300
    assert job.budget.rate_per_second == pytest.approx(3.6)
    assert job.load.precedence == ("csv", "external", "rules")
    assert job.load.overwrite_existing == ("csv",)
    assert job.window.default == "yesterday"


def test_a_left_out_section_has_exactly_the_dataclass_defaults(tmp_path: Path) -> None:
    """Defaults are written once, in the config dataclasses: a job that names no budget, window,
    store, verify or load keys gets those dataclasses' defaults, field for field."""
    from pipeline.config import (
        BudgetConfig,
        CsvLabelsConfig,
        LoadConfig,
        StoreConfig,
        VerifyConfig,
        WindowConfig,
    )

    job = load_job(write(tmp_path, MINIMAL), env={})
    assert job.budget == BudgetConfig()
    assert job.window == WindowConfig()
    assert job.store == StoreConfig()
    assert job.verify == VerifyConfig()
    assert job.load == LoadConfig()
    assert job.labels.csv == CsvLabelsConfig()


def test_unknown_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    """A typo in a job file is an error that says which key, in which file."""
    path = write(tmp_path, MINIMAL + "\n[budget]\nrequests_per_perod = 10\n")
    with pytest.raises(ConfigError) as info:
        load_job(path, env={})
    assert str(path) in str(info.value)
    assert "budget.requests_per_perod" in str(info.value)


def test_unknown_top_level_section_is_an_error(tmp_path: Path) -> None:
    """An unknown section is not silently ignored."""
    with pytest.raises(ConfigError, match="'lode'"):
        load_job(write(tmp_path, MINIMAL + "\n[lode]\nx = 1\n"), env={})


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    """A string where a number belongs says what was expected."""
    text = MINIMAL + '\n[budget]\nconcurrency = "four"\n'
    with pytest.raises(ConfigError, match=r"budget\.concurrency.*expected int"):
        load_job(write(tmp_path, text), env={})


def test_env_vars_expand_and_missing_ones_are_named(tmp_path: Path) -> None:
    """${VAR} expands from the environment; an unset one is named in the error."""
    text = MINIMAL.replace('"my-gateway"', '"${GW}"')
    assert load_job(write(tmp_path, text), env={"GW": "from-env"}).gateway.gateway_id == "from-env"
    with pytest.raises(ConfigError, match=r"\$\{GW\}.*GW is not set"):
        load_job(write(tmp_path, text), env={})


def test_account_id_can_come_from_cloudflare_account_id(tmp_path: Path) -> None:
    """CLOUDFLARE_ACCOUNT_ID fills in a missing account_id, as Cloudflare's own tools do."""
    text = '[gateway]\ngateway_id = "g"\n'
    job = load_job(write(tmp_path, text), env={"CLOUDFLARE_ACCOUNT_ID": "ab" * 16})
    assert job.gateway.account_id == "ab" * 16
    with pytest.raises(ConfigError, match="account_id"):
        load_job(write(tmp_path, text), env={})


def test_token_from_env_or_file_never_shown(tmp_path: Path) -> None:
    """The token comes from the environment or a file and never shows in a repr."""
    job = load_job(write(tmp_path, MINIMAL), env={"CLOUDFLARE_API_TOKEN": "sekrit-123"})
    assert job.gateway.require_token().reveal() == "sekrit-123"
    assert "sekrit-123" not in repr(job)
    token_file = tmp_path / "token"
    token_file.write_text("from-file-456\n")
    text = MINIMAL + f'token_file = "{token_file}"\n'
    job = load_job(write(tmp_path, text), env={})
    assert job.gateway.require_token() == Secret("from-file-456")
    assert "from-file-456" not in repr(job)


def test_missing_token_says_which_variable_to_set(tmp_path: Path) -> None:
    """Without a token the error names the variable and the permissions needed."""
    job = load_job(write(tmp_path, MINIMAL + 'token_env = "MY_TOKEN"\n'), env={})
    with pytest.raises(ConfigError, match=r"MY_TOKEN.*AI Gateway Read"):
        job.gateway.require_token()


@pytest.mark.parametrize(
    ("snippet", "key"),
    [
        ('[load]\nprecedence = ["csv", "llm"]', "load.precedence"),
        ("[extract]\nper_page = 100", "extract.per_page"),
        ('[[extract.filters]]\nkey = "model"\noperator = "gte"\nvalue = ["x"]', "operator"),
        ('[[labels.rules]]\nname = "r"\nwhen = "success"', "labels.rules[1].feedback"),
        ('[[labels.rules]]\nname = "r"\nwhen = "x"\nfeedback = 0', "labels.rules[1].feedback"),
        ("[labels.external]\nenabled = true", "labels.external.command"),
        ('[window]\nlag = "soon"', "window.lag"),
        ("[budget]\nheadroom = 1.5", "budget.headroom"),
        ('[budget]\nperiod = "0s"', "budget.period"),
        ('[budget]\nbucket = "  "', "budget.bucket"),
        ("[budget]\nbucket = 7", "budget.bucket"),
    ],
)
def test_bad_values_name_their_key(tmp_path: Path, snippet: str, key: str) -> None:
    """Each invalid value is reported against its own key."""
    with pytest.raises(ConfigError) as info:
        load_job(write(tmp_path, MINIMAL + "\n" + snippet + "\n"), env={})
    assert key in str(info.value)


def test_budget_bucket_names_a_shared_bucket_and_defaults_to_one_per_token(tmp_path: Path) -> None:
    """`[budget] bucket` is read as the bucket's name, trimmed; a job that names none has none
    (its budget is its token's own)."""
    assert load_job(write(tmp_path, MINIMAL), env={}).budget.bucket is None
    named = load_job(write(tmp_path, MINIMAL + '\n[budget]\nbucket = " alice "\n'), env={})
    assert named.budget.bucket == "alice"


def test_overrides_replace_only_what_is_given(tmp_path: Path) -> None:
    """Command-line overrides change the job without touching other settings."""
    job = load_job(write(tmp_path, MINIMAL), env={})
    changed = job.with_overrides(data_dir=Path("/tmp/d"), max_requests=7)
    assert changed.store.data_dir == Path("/tmp/d")
    assert changed.budget.max_requests == 7
    assert changed.budget.requests_per_period == job.budget.requests_per_period
    assert changed.gateway == job.gateway


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("250ms", 0.25), (30, 30)],
)
def test_durations(text: str | int, seconds: float) -> None:
    """Durations read the way people write them."""
    assert parse_duration(text) == pytest.approx(seconds)


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    """A job file that is not TOML says so and names the file."""
    path = write(tmp_path, "[gateway\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_job(path, env={})
    assert str(path) in str(info.value)


def test_token_env_holding_the_token_itself_is_refused_without_showing_it(tmp_path: Path) -> None:
    """`token_env = "<the token>"` (a common slip) is an error that never repeats the value."""
    value = "Kq9-zX2v_8sLmN4pR7tY1wB6cD3fG5hJ0kL2"
    with pytest.raises(ConfigError) as info:
        load_job(write(tmp_path, MINIMAL + f'token_env = "{value}"\n'), env={})
    message = str(info.value)
    assert "gateway.token_env" in message and str(tmp_path / "job.toml") in message
    assert "NAME of an environment variable" in message
    assert value not in message


def test_token_env_that_looks_like_a_token_is_refused_without_showing_it(tmp_path: Path) -> None:
    """A token of letters and digits only has a name's syntax: it is still refused, unshown,
    whether or not some variable holds it."""
    value = "Kq9zX2v8sLmN4pR7tY1wB6cD3fG5hJ0kL2"
    for env in ({"TOK": value}, {}):
        with pytest.raises(ConfigError, match="NAME of an environment variable") as info:
            load_job(write(tmp_path, MINIMAL + f'token_env = "{value}"\n'), env=env)
        assert value not in str(info.value)


def test_an_ordinary_unset_token_env_is_still_a_name(tmp_path: Path) -> None:
    """A conventional name is never taken for a value, even when another variable holds it."""
    text = MINIMAL + 'token_env = "CLOUDFLARE_API_TOKEN_PROD"\n'
    job = load_job(write(tmp_path, text), env={"WHICH_TOKEN": "CLOUDFLARE_API_TOKEN_PROD"})
    with pytest.raises(ConfigError, match="set the environment variable CLOUDFLARE_API_TOKEN_PROD"):
        job.gateway.require_token()


def test_token_is_stripped_of_surrounding_whitespace(tmp_path: Path) -> None:
    """A token pasted with a trailing newline or spaces (env or file) is used without them."""
    job = load_job(write(tmp_path, MINIMAL), env={"CLOUDFLARE_API_TOKEN": " tok-from-env-1\n"})
    assert job.gateway.require_token() == Secret("tok-from-env-1")
    token_file = tmp_path / "token"
    token_file.write_text("\n  tok-from-file-2 \r\n")
    job = load_job(write(tmp_path, MINIMAL + f'token_file = "{token_file}"\n'), env={})
    assert job.gateway.require_token() == Secret("tok-from-file-2")


def test_a_blank_token_variable_counts_as_no_token(tmp_path: Path) -> None:
    """A token variable holding only whitespace is reported as missing, not sent."""
    job = load_job(write(tmp_path, MINIMAL), env={"CLOUDFLARE_API_TOKEN": " \n"})
    with pytest.raises(ConfigError, match="CLOUDFLARE_API_TOKEN"):
        job.gateway.require_token()


def test_the_token_and_secret_env_values_are_redacted_everywhere(tmp_path: Path) -> None:
    """Loading a job registers its token and its `secret_env` values with the redactor."""
    text = MINIMAL + 'token_env = "MY_TOKEN"\nsecret_env = ["JUDGE_KEY"]\n'
    env = {"MY_TOKEN": "tok-redacted-3a4b5c", "JUDGE_KEY": "judge-key-9z8y7x"}
    job = load_job(write(tmp_path, text), env=env)
    assert job.gateway.secret_env == ("JUDGE_KEY",)
    assert scrub("a tok-redacted-3a4b5c b judge-key-9z8y7x") == "a *** b ***"


def test_secret_env_entries_must_be_variable_names(tmp_path: Path) -> None:
    """`secret_env` lists variable names; a value there is refused without being shown."""
    with pytest.raises(ConfigError, match=r"gateway\.secret_env.*NAME") as info:
        load_job(write(tmp_path, MINIMAL + 'secret_env = ["sk live 123"]\n'), env={})
    assert "sk live 123" not in str(info.value)


def test_the_external_labeler_environment_withholds_the_secrets(tmp_path: Path) -> None:
    """The labeler command's environment is this one minus the token variable,
    CLOUDFLARE_API_TOKEN, the job's secret_env and any variable holding the token."""
    text = MINIMAL + 'token_env = "MY_TOKEN"\nsecret_env = ["JUDGE_DB_PASSWORD"]\n'
    env = {
        "MY_TOKEN": "tok-withheld-1a2b3c",
        "CLOUDFLARE_API_TOKEN": "another-cf-token-77",
        "COPY_OF_TOKEN": "tok-withheld-1a2b3c\n",
        "JUDGE_DB_PASSWORD": "hunter2hunter2",
        "OPENAI_API_KEY": "sk-the-judge-needs-this",
        "PATH": "/usr/bin",
    }
    job = load_job(write(tmp_path, text), env=env)
    child = job.labels.external.environment(env)
    assert child == {"OPENAI_API_KEY": "sk-the-judge-needs-this", "PATH": "/usr/bin"}
