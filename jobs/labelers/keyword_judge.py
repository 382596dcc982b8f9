"""An example external labeler: judges AI Gateway logs by keywords in their response heads.

Run by the label stage as configured in a job file::

    [labels.external]
    name = "keyword-judge"
    command = ["{python}", "jobs/labelers/keyword_judge.py", "{input}", "{output}"]
    send = "sample"
    sample_size = 200
    timeout = "2m"

It reads ``{input}`` (Parquet: every extracted log column plus ``request_head`` and
``response_head``) and writes ``{output}`` as JSON lines, one object per log it has an opinion on:
``{"log_id": ..., "feedback": -1, "score": 5, "reason": ...}``. Verdicts:

    refusal in the response head ("I can't help with that", "As an AI language model" ...)  -> -1
    an error text in the response head, or an unsuccessful call (status >= 400)              -> -1
    anything else                                                    -> no row (no opinion)

A keyword judge cannot tell a good answer from a bad one, so it abstains there; that is what an LLM
judge is for.

Plugging in an LLM judge
------------------------
The contract is only files and an exit code, so any program in any language works:

1. Read the input Parquet (pyarrow, polars, pandas, DuckDB). Use ``request_head`` and
   ``response_head`` (the first ~500 characters of each body; they cost one API request per log,
   so keep ``send = "sample"`` and a modest ``sample_size``), plus model, provider and metadata.
2. For each log ask the model for a verdict, e.g. with a prompt like "Rate this assistant reply to
   this request from 0 to 100 and say whether a user would give it thumbs up or down. Answer JSON:
   {"score": int, "thumb": "up"|"down", "why": str}". Bound concurrency and retry politely: the
   judge's own provider has rate limits too. Cache verdicts by log id so a re-run is cheap.
3. Write ``{output}`` with ``log_id``, ``feedback`` (1/-1, or up/down...), ``score`` (0..100),
   ``reason`` — JSON lines, CSV or Parquet. Leave out logs it is unsure about.
4. Exit 0. Any other exit code, or running past ``timeout``, marks the labeler failed (with the
   tail of its stderr in the report) while the other labelers' labels still count; print progress
   and errors to stderr.

Start it in shadow mode — leave "external" out of ``[load] precedence`` — and read the agreement
with the analysts' labels in ``label_analysis.json`` before letting its labels be written.
Secrets (the model provider's key) come from the environment, never from the job file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

REFUSALS = (
    r"i can'?t help",
    r"i cannot (help|assist)",
    r"i'?m not able to help",
    r"i'?m sorry, but i can",
    r"as an ai( language model)?",
    r"i won'?t be able to",
    r"violate (our|the) usage polic",
)
ERRORS = (
    r"rate limit",
    r"internal server error",
    r"overloaded",
    r"server_error",
    r"\"type\":\s*\"error\"",
    r"try again later",
)


def judge(logs: pl.DataFrame) -> pl.DataFrame:
    """log_id, feedback, score, reason for the logs with a verdict."""
    head = pl.col("response_head").fill_null("").str.to_lowercase()
    refusal = head.str.contains("(" + "|".join(REFUSALS) + ")")
    error_text = head.str.contains("(" + "|".join(ERRORS) + ")")
    failed = pl.col("status_code").fill_null(200) >= 400
    verdict = (
        pl.when(failed)
        .then(pl.format("provider error (HTTP {})", pl.col("status_code")))
        .when(error_text)
        .then(pl.lit("error text in the response"))
        .when(refusal)
        .then(pl.lit("the model refused"))
    )
    return (
        logs.select(
            pl.col("id").alias("log_id"),
            verdict.alias("reason"),
            pl.when(refusal & ~failed & ~error_text).then(10).otherwise(0).alias("score"),
        )
        .filter(pl.col("reason").is_not_null())
        .with_columns(pl.lit(-1).alias("feedback"))
        .select("log_id", "feedback", "score", "reason")
    )


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: keyword_judge.py INPUT.parquet OUTPUT", file=sys.stderr)
        return 2
    logs = pl.read_parquet(argv[1])
    verdicts = judge(logs)
    verdicts.write_ndjson(Path(argv[2]))
    print(f"keyword judge: {logs.height} logs read, {verdicts.height} judged", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
