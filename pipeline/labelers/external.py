"""An external labeler: any command that reads logs from a Parquet file and writes labels.

    [labels.external]
    name = "keyword-judge"
    command = ["{python}", "jobs/labelers/keyword_judge.py", "{input}", "{output}"]
    timeout = "10m"
    send = "sample"        # all | unlabeled | sample
    sample_size = 200      # for send = "sample"
    fetch_heads = true     # GET each sent log for its request/response heads (one request per log)

Placeholders in `command`: ``{input}`` (the Parquet file of the logs sent), ``{output}`` (where the
command writes its labels), ``{python}`` (the interpreter running this pipeline, so a labeler script
can use polars/pyarrow from the same environment). The command runs without a shell, and with this
process's environment minus the pipeline's secrets: the API token's variable, ``CLOUDFLARE_API_TOKEN``,
any variable holding the token, and the variables listed in ``[gateway] secret_env``. A judge's own
credentials (``OPENAI_API_KEY``...) are passed on. What it writes is redacted like every file (its output
file, once read, too).

Which logs are sent: ``all`` the window's logs; ``unlabeled`` those that no earlier labeler of this
run labeled and that carry no feedback or score yet; ``sample`` a random sample of ``sample_size``
logs, seeded by the run id so a re-run of the run sends the same logs. The input has every LOG_SCHEMA
column plus ``request_head`` and ``response_head``: list entries do not carry them, so with
``fetch_heads`` each sent log costs one GET from the run's shared request budget (that is why
``sample`` suits an LLM judge). Logs whose heads could not be fetched are sent with nulls. The
sent logs stream from the window's Parquet into the input file (sorted by id; for ``all`` and
``unlabeled`` that sort is polars' streaming sort of the sent rows); only their ids are held.

The output may be Parquet, JSON lines or CSV (recognised by content, not by name) with columns
``log_id`` (or ``id``), ``feedback``, ``score``, ``reason``; values are read and checked exactly like
an analyst's CSV (`pipeline.labelers.values`), plus ``not_sent`` for a log that was not in the input.
Several rows for one log: the last wins. Rejected rows go to ``<name>.rejects.csv`` beside the input.

A non-zero exit, a timeout (the whole process group is killed) or unreadable output does not stop
the label stage: the labeler reports ``status = failed`` with the tail of the command's stderr, and
the other labelers' labels still count.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.config import ExternalLabelerConfig
from pipeline.errors import InputError
from pipeline.gateway.lookup import get_each
from pipeline.labelers.base import (
    LabelContext,
    LabelerOutput,
    empty_labels,
    last_word_wins,
    to_label_frame,
)
from pipeline.labelers.csvfile import (
    FEEDBACK_ALIASES,
    LOG_ID_ALIASES,
    REASON_ALIASES,
    SCORE_ALIASES,
    normalize_header,
    read_table,
    rejects_csv,
    table_frame,
)
from pipeline.labelers.values import validate_labels
from pipeline.redaction import scrub
from pipeline.schemas import LOG_SCHEMA
from pipeline.state.store import (
    write_parquet_atomic,
    write_parquet_stream_atomic,
    write_text_atomic,
)

INPUT_SCHEMA = pa.schema(
    [*LOG_SCHEMA, pa.field("request_head", pa.string()), pa.field("response_head", pa.string())]
)
STDERR_TAIL_LINES = 20


class ExternalLabeler:
    kind = "external"

    def __init__(
        self,
        config: ExternalLabelerConfig,
        workdir: Path,
        *,
        concurrency: int = 4,
        python: str = sys.executable,
    ) -> None:
        self.config = config
        self.name = config.name
        self.workdir = workdir
        self.concurrency = max(1, concurrency)
        self.python = python

    @property
    def source(self) -> str:
        return f"external:{self.name}"

    async def label(
        self, logs: pl.DataFrame | pl.LazyFrame, context: LabelContext
    ) -> LabelerOutput:
        """`logs` may be a lazy scan: the logs to send stream from it into the input file, and
        only their ids are held (for the heads and to check the command's answers)."""
        started = time.monotonic()
        acct: dict[str, Any] = {"name": self.name, "send": self.config.send, "status": "ok"}
        acct["sent"] = 0
        sent = self.select_lazy(logs.lazy(), context)
        ids = sent.select("id").collect(engine="streaming")["id"]
        acct["sent"] = ids.len()
        heads, fetched = await self._heads(ids.to_list(), context, acct)
        if fetched:
            sent = sent.join(heads.lazy(), on="id", how="left", maintain_order="left")
        names = sent.collect_schema().names()
        sent = sent.with_columns(
            pl.lit(None, pl.String).alias(column)
            for column in ("request_head", "response_head")
            if column not in names
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.name)
        inp = self.workdir / f"{stem}.input.parquet"
        out = self.workdir / f"{stem}.output"
        out.unlink(missing_ok=True)
        batches = sent.select(INPUT_SCHEMA.names).collect_batches(engine="streaming")
        write_parquet_stream_atomic((b.to_arrow() for b in batches), INPUT_SCHEMA, inp)
        try:
            if ids.len() == 0:
                acct.update(rows=0, accepted=0, rejected=0, labels=0)
                return LabelerOutput(empty_labels(), acct)
            await self._run(inp, out)
            labels = self._read_output(out, ids, context, acct, self.workdir / stem)
            return LabelerOutput(labels, acct)
        except InputError as exc:
            acct.update(status="failed", error=str(exc))
            return LabelerOutput(empty_labels(), acct)
        finally:
            if out.exists():
                _scrub_output(out)
            acct["seconds"] = round(time.monotonic() - started, 3)

    def select(self, logs: pl.DataFrame, context: LabelContext) -> pl.DataFrame:
        """The logs to send, per `send`, by id."""
        return self.select_lazy(logs.lazy(), context).collect()

    def select_lazy(self, logs: pl.LazyFrame, context: LabelContext) -> pl.LazyFrame:
        """`select` as a query: for `sample`, only the window's ids are collected (sorted, as
        the seeded sample is drawn from them), never whole logs."""
        if self.config.send == "unlabeled":
            labeled = context.labeled
            if labeled is None:
                done = pl.lit(False)
            elif isinstance(labeled, pl.Series):
                done = pl.col("id").is_in(labeled.implode())
            else:
                done = labeled
            return logs.filter(
                ~done & pl.col("feedback").is_null() & pl.col("score").is_null()
            ).sort("id")
        if self.config.send == "sample":
            seed = int(hashlib.sha256(context.run_id.encode()).hexdigest()[:8], 16)
            ids = logs.select("id").sort("id").collect(engine="streaming")
            n = min(self.config.sample_size, ids.height)
            picked = ids.sample(n=n, seed=seed)
            return logs.join(picked.lazy(), on="id", how="semi").sort("id")
        return logs.sort("id")

    async def _heads(
        self, ids: list[str], context: LabelContext, acct: dict[str, Any]
    ) -> tuple[pl.DataFrame, bool]:
        """request_head/response_head for `ids`, one GET each through the shared budget."""
        acct.update(heads_fetched=0, heads_not_found=0, heads_skipped=0, requests=0)
        client = context.client
        if not self.config.fetch_heads or not ids:
            return pl.DataFrame(), False
        if client is None:
            acct["heads_skipped"] = len(ids)
            acct["note"] = "heads not fetched: no API client was given to the label stage"
            return pl.DataFrame(), False
        before = client.stats.requests
        fetched = await get_each(client, ids, concurrency=self.concurrency, stop_on_budget=True)
        results = {
            log_id: (_text(entry.get("request_head")), _text(entry.get("response_head")))
            for log_id, entry in fetched.entries.items()
        }
        acct["requests"] = client.stats.requests - before
        acct["heads_fetched"] = len(results)
        acct["heads_not_found"] = len(fetched.missing)
        acct["heads_skipped"] = len(ids) - len(results) - acct["heads_not_found"]
        if fetched.stopped:
            acct["note"] = "the request budget ran out while fetching heads; the rest went without"
        frame = pl.DataFrame(
            {
                "id": list(results),
                "request_head": [v[0] for v in results.values()],
                "response_head": [v[1] for v in results.values()],
            },
            schema={"id": pl.String, "request_head": pl.String, "response_head": pl.String},
        )
        return frame, True

    def argv(self, inp: Path, out: Path) -> list[str]:
        subs = {"{input}": str(inp), "{output}": str(out), "{python}": self.python}
        result = []
        for arg in self.config.command:
            for key, value in subs.items():
                arg = arg.replace(key, value)
            result.append(arg)
        return result

    async def _run(self, inp: Path, out: Path) -> None:
        argv = self.argv(inp, out)
        what = f"external labeler '{self.name}' ({argv[0]})"
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.config.environment(),  # without the API token and the job's secrets
                start_new_session=True,  # its own process group: a timeout kills its children too
            )
        except OSError as exc:
            raise InputError(f"{what} could not start: {exc.strerror or exc}") from None
        try:
            _, stderr = await asyncio.wait_for(
                proc.communicate(), timeout=self.config.timeout_seconds
            )
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            _, stderr = await proc.communicate()
            raise InputError(
                f"{what} timed out after {self.config.timeout_seconds:g} s and was stopped"
                + _tail(stderr)
            ) from None
        if proc.returncode != 0:
            raise InputError(f"{what} exited with code {proc.returncode}" + _tail(stderr))
        if not out.exists():
            raise InputError(f"{what} exited 0 but wrote nothing to {out}" + _tail(stderr))

    def _read_output(
        self,
        out: Path,
        sent_ids: pl.Series,
        context: LabelContext,
        acct: dict[str, Any],
        stem: Path,
    ) -> pl.DataFrame:
        rows, header, delimiter = read_output(out)
        rows = validate_labels(rows).with_columns(
            reject=pl.when(pl.col("reject").is_null() & ~pl.col("log_id").is_in(sent_ids.implode()))
            .then(pl.lit("not_sent"))
            .otherwise(pl.col("reject"))
        )
        counts = rows.filter(pl.col("reject").is_not_null())["reject"].value_counts()
        by_reason = dict(sorted(zip(counts["reject"], counts["count"], strict=True)))
        accepted = last_word_wins(rows.filter(pl.col("reject").is_null()), ["line"])
        outcome = accepted["outcome"]
        acct.update(
            rows=rows.height,
            accepted=accepted.height,
            rejected=sum(by_reason.values()),
            rejected_by_reason=by_reason,
            labels=int((outcome == "label").sum()),
            duplicates=int((outcome == "duplicate").sum()),
            superseded=int((outcome == "superseded").sum()),
        )
        if by_reason:
            rejects = stem.with_name(stem.name + ".rejects.csv")
            write_text_atomic(rejects_csv(rows, header, delimiter), rejects)
            acct["rejects_path"] = str(rejects)
        winners = accepted.filter(pl.col("outcome") == "label").with_columns(
            source=pl.lit(self.source),
            reason=pl.coalesce(
                pl.when(pl.col("reason").str.strip_chars() != "").then(pl.col("reason")),
                pl.lit(f"external labeler {self.name}"),
            ),
        )
        return to_label_frame(winners.sort("log_id"), context.now)


def _scrub_output(path: Path) -> None:
    """Rewrite the command's output file, kept in the run folder, without any known secret.

    The command wrote it, not the pipeline: a labeler that found the token (in a file it can read)
    and quoted it must not leave it in the run folder for whoever reads that."""
    data = path.read_bytes()
    if data[:4] == b"PAR1":
        with contextlib.suppress(Exception):  # unreadable: the stage has reported it already
            write_parquet_atomic(pq.read_table(path), path)
        return
    text = data.decode("utf-8", "replace")
    if scrub(text) != text:
        write_text_atomic(text, path)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _tail(stderr: bytes | None) -> str:
    lines = (stderr or b"").decode("utf-8", "replace").strip().splitlines()
    if not lines:
        return " (its stderr was empty)"
    return "; last lines of its stderr:\n  " + "\n  ".join(lines[-STDERR_TAIL_LINES:])


def read_output(path: Path) -> tuple[pl.DataFrame, list[str], str]:
    """A labeler's output (Parquet, JSON lines or CSV) -> (rows like `csv.table_frame`, header,
    delimiter for a rejects file). Raises InputError when it cannot be read."""
    data = path.read_bytes()
    if not data.strip():  # the labeler abstained on every log
        data = b"log_id,feedback,score,reason\n"
    if data[:4] == b"PAR1" or data.lstrip()[:1] == b"{":
        try:
            frame = (
                pl.read_parquet(path)
                if data[:4] == b"PAR1"
                else pl.read_ndjson(path, infer_schema_length=None)
            )
        except Exception as exc:  # polars/arrow raise several kinds for a damaged file
            raise InputError(f"the labeler's output {path} cannot be read: {exc}") from None
        header = frame.columns
        names = [normalize_header(c) for c in header]

        def pick(aliases: tuple[str, ...]) -> pl.Expr:
            for alias in aliases:
                if alias in names:
                    return pl.col(header[names.index(alias)]).cast(pl.String)
            return pl.lit(None, pl.String)

        if not any(a in names for a in LOG_ID_ALIASES):
            raise InputError(f"the labeler's output {path} has no log_id column; it has {header}")
        rows = frame.select(
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("line"),
            pick(LOG_ID_ALIASES).alias("log_id"),
            pick(FEEDBACK_ALIASES).alias("feedback"),
            pick(SCORE_ALIASES).alias("score"),
            pick(REASON_ALIASES).alias("reason"),
            *[pl.col(c).cast(pl.String).alias(f"orig_{i}") for i, c in enumerate(header)],
        ).with_columns(
            pl.col("feedback").alias("feedback_raw"),
            pl.col("score").alias("score_raw"),
            pl.lit(None, pl.String).alias("extra"),
            pl.lit(None, pl.String).alias("reject"),
        )
        return rows, header, ","
    try:
        table = read_table(data)
    except InputError as exc:
        raise InputError(f"the labeler's output {path} cannot be read: {exc}") from None
    return table_frame(table), table.header, table.delimiter
