"""Secrets stay with the pipeline: not in a labeler's environment, a written file, or an error."""

from __future__ import annotations

import html
import json
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from click.testing import CliRunner, Result

from pipeline.cli import cli
from pipeline.redaction import redact
from pipeline.state.store import write_json_atomic, write_parquet_atomic, write_text_atomic
from tests.runkit import D0, TOKEN_ENV, emulator, job_text

SECRET = "sk-live-0f9e8d7c6b5a-SECRET"
DB_PASSWORD = "judge-db-password-4f3e2d"


def invoke(args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, args, env=env)


def external_job(tmp_path: Path, base_url: str, code: str, gateway_extra: str = "") -> Path:
    """A job whose external labeler runs `code` (python -c) with {input} and {output}."""
    text = job_text(data_dir=tmp_path / "data", base_url=base_url).replace(
        f'token_env = "{TOKEN_ENV}"', f'token_env = "{TOKEN_ENV}"\n{gateway_extra}'
    )
    command = json.dumps([sys.executable, "-c", code, "{input}", "{output}"])
    text += f'[labels.external]\nname = "judge"\ncommand = {command}\nfetch_heads = false\n'
    path = tmp_path / "nightly.toml"
    path.write_text(text, encoding="utf-8")
    return path


def everything_written(data_dir: Path) -> str:
    """Every text file under the data dir, and every string cell of every Parquet file."""
    parts: list[str] = []
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            for column in frame.select(pl.col(pl.String)).columns:
                parts.extend(v for v in frame[column].to_list() if v is not None)
        elif path.suffix in (".json", ".md", ".html", ".csv", ".jsonl", ".output", ".txt"):
            parts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)


ECHO_ENVIRONMENT = (
    "import json, os, sys, polars as pl; "
    "ids = pl.read_parquet(sys.argv[1])['id'].to_list(); "
    "row = {'log_id': ids[0], 'feedback': 1, 'reason': json.dumps(dict(os.environ))}; "
    "open(sys.argv[2], 'w').write(json.dumps(row))"
)


def test_an_external_labeler_that_echoes_its_environment_never_sees_the_token(
    tmp_path: Path,
) -> None:
    """The judge's environment has no API token and none of the job's secret_env; what it
    needs (PATH, its own provider's key) is still there, and the run ends ok."""
    env = {
        TOKEN_ENV: SECRET,
        "CLOUDFLARE_API_TOKEN": SECRET,
        "JUDGE_DB_PASSWORD": DB_PASSWORD,
        "OPENAI_API_KEY": "sk-openai-for-the-judge",
    }
    with emulator(days=1, tokens={SECRET: "edit"}) as emu:
        job = external_job(
            tmp_path, emu.base_url, ECHO_ENVIRONMENT, 'secret_env = ["JUDGE_DB_PASSWORD"]'
        )
        result = invoke(["run", str(job), "--window", str(D0.date()), "-q"], env)
    assert result.exit_code == 0, result.output
    labels = pl.read_parquet(next((tmp_path / "data" / "runs").glob("*/labels.parquet")))
    (reason,) = labels.filter(pl.col("source") == "external:judge")["reason"].to_list()
    seen = json.loads(reason)
    assert "PATH" in seen and seen["OPENAI_API_KEY"] == "sk-openai-for-the-judge"
    assert not {TOKEN_ENV, "CLOUDFLARE_API_TOKEN", "JUDGE_DB_PASSWORD"} & set(seen)
    written = everything_written(tmp_path / "data")
    assert SECRET not in written and DB_PASSWORD not in written


@pytest.mark.parametrize("where", ["reason", "stderr"])
def test_a_token_a_labeler_finds_anyway_is_redacted_in_every_file(
    tmp_path: Path, where: str
) -> None:
    """A labeler that reads the token file and puts the token in its reasons (or in the stderr
    the report quotes when it fails) leaves *** in labels, plan, analysis and reports."""
    token_file = tmp_path / "cf-token"
    token_file.write_text(SECRET + "\n")
    code = (
        "import json, sys, polars as pl; "
        f"token = open({str(token_file)!r}).read().strip(); "
        "ids = pl.read_parquet(sys.argv[1])['id'].to_list(); "
        "rows = [json.dumps({'log_id': i, 'feedback': -1, 'reason': 'saw ' + token}) "
        "for i in ids[:5]]; "
        "open(sys.argv[2], 'w').write('\\n'.join(rows)); "
        + (
            "print('failed with token', token, file=sys.stderr); sys.exit(3)"
            if where == "stderr"
            else ""
        )
    )
    with emulator(days=1, tokens={SECRET: "edit"}) as emu:
        job = external_job(tmp_path, emu.base_url, code, f'token_file = "{token_file}"')
        result = invoke(["run", str(job), "--window", str(D0.date()), "-q"], {})
        report = invoke(
            ["report", "--data-dir", str(tmp_path / "data"), "--format", "json", _run_id(tmp_path)],
            {},
        )
    assert result.exit_code == 0, result.output
    written = everything_written(tmp_path / "data")
    assert SECRET not in written and SECRET not in result.output + report.output
    assert ("saw ***" if where == "reason" else "failed with token ***") in written


def _run_id(tmp_path: Path) -> str:
    (run_dir,) = (tmp_path / "data" / "runs").iterdir()
    return run_dir.name


def test_a_token_pasted_as_the_variable_name_is_refused_without_echoing_it(
    tmp_path: Path,
) -> None:
    """`token_env = "<the token>"`: exit 2, the message says a NAME is wanted, never the value."""
    text = job_text(data_dir=tmp_path / "data", base_url="http://127.0.0.1:9").replace(
        f'token_env = "{TOKEN_ENV}"', f'token_env = "{SECRET}"'
    )
    job = tmp_path / "nightly.toml"
    job.write_text(text, encoding="utf-8")
    for extra in ([], ["--verbose"], ["--log-format", "json"]):
        result = invoke(["run", str(job), "--window", str(D0.date()), *extra], {})
        assert result.exit_code == 2, result.output
        assert "NAME of an environment variable" in result.stderr
        assert str(job) in result.stderr
        assert SECRET not in result.output and SECRET not in result.stderr


def test_a_token_with_a_trailing_newline_works(tmp_path: Path) -> None:
    """A token variable set from a file with its newline (`$(cat token)` keeps none, `<` does)
    still authenticates: the run ends ok."""
    with emulator(days=1, tokens={SECRET: "edit"}) as emu:
        text = job_text(data_dir=tmp_path / "data", base_url=emu.base_url)
        job = tmp_path / "nightly.toml"
        job.write_text(text, encoding="utf-8")
        result = invoke(
            ["run", str(job), "--window", str(D0.date()), "-q"], {TOKEN_ENV: SECRET + "\n"}
        )
    assert result.exit_code == 0, result.output
    assert "status ok" in result.stdout


@pytest.mark.parametrize("token", ["tøken-with-ünïcode-0123", "token-with\ta-tab-0123"])
def test_a_token_that_cannot_be_a_header_is_an_auth_error(tmp_path: Path, token: str) -> None:
    """A token with non-ASCII or control characters: exit 3 with what is wrong and what to do,
    never an `unexpected UnicodeEncodeError`, and never the token."""
    text = job_text(data_dir=tmp_path / "data", base_url="http://127.0.0.1:9")
    job = tmp_path / "nightly.toml"
    job.write_text(text, encoding="utf-8")
    result = invoke(["run", str(job), "--window", str(D0.date())], {TOKEN_ENV: token})
    assert result.exit_code == 3, result.output
    assert "cannot be sent" in result.stderr and TOKEN_ENV in result.stderr
    assert "unexpected" not in result.stderr
    assert token not in result.output and token not in result.stderr


def test_a_secret_is_redacted_in_its_json_and_html_escaped_forms_too(tmp_path: Path) -> None:
    """A token with quotes or <&> in it is scrubbed from a JSON file (where it is escaped), an
    HTML page (entity-escaped) and a Parquet string column alike."""
    odd = 'tok"en<&>\\sécret-42'
    redact(odd)
    write_json_atomic({"reason": f"saw {odd}"}, tmp_path / "a.json")
    write_text_atomic(f"<td>{html.escape(odd)}</td>", tmp_path / "a.html")
    write_parquet_atomic(pa.table({"reason": [f"saw {odd}", None]}), tmp_path / "a.parquet")
    assert json.loads((tmp_path / "a.json").read_text()) == {"reason": "saw ***"}
    assert (tmp_path / "a.html").read_text() == "<td>***</td>"
    assert pl.read_parquet(tmp_path / "a.parquet")["reason"].to_list() == ["saw ***", None]


def test_short_values_are_never_registered_so_json_stays_json(tmp_path: Path) -> None:
    """A secret_env variable holding "true" or "1234" is withheld from the labeler but not
    redacted: it would turn every JSON boolean or count into ***."""
    redact("true")
    redact("1234")
    write_json_atomic({"ok": True, "count": 1234}, tmp_path / "b.json")
    assert json.loads((tmp_path / "b.json").read_text()) == {"ok": True, "count": 1234}
