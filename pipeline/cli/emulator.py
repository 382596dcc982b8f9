"""The emulator's commands: `aigw-feedback emulator serve` (the local AI Gateway Logs API)."""

from __future__ import annotations

import click


@click.group("emulator")
def emulator_group() -> None:
    """A local AI Gateway Logs API: no account, no network, optional faults."""


def _token_option(values: tuple[str, ...]) -> dict[str, str] | None:
    if not values:
        return None
    tokens: dict[str, str] = {}
    for value in values:
        token, sep, scope = value.partition("=")
        if not sep or scope not in ("read", "edit") or not token:
            raise click.BadParameter(
                f"{value!r}: expected TOKEN=read or TOKEN=edit", param_hint="--token"
            )
        tokens[token] = scope
    return tokens


@emulator_group.command("serve")
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Interface to bind (keep loopback)."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8787,
    show_default=True,
    help="0 picks a free port.",
)
@click.option(
    "--seed",
    "seed_file",
    type=click.Path(exists=True, dir_okay=False),
    metavar="FILE",
    help="Logs to load (.jsonl, .jsonl.gz or a .json array). Default: the bundled sample.",
)
@click.option(
    "--generate",
    type=click.IntRange(min=0),
    metavar="N",
    help="Generate N logs over the last 7 days instead.",
)
@click.option(
    "--random-seed",
    type=int,
    default=0,
    show_default=True,
    metavar="S",
    help="Seed for --generate.",
)
@click.option(
    "--shift-to-yesterday/--no-shift",
    default=True,
    show_default=True,
    help="Move loaded logs by whole days so their newest day is yesterday (UTC).",
)
@click.option(
    "--db",
    default=":memory:",
    show_default=True,
    metavar="PATH",
    help="SQLite file to keep the logs in.",
)
@click.option("--account-id", default="0123456789abcdef0123456789abcdef", show_default=True)
@click.option("--gateway-id", default="demo-gateway", show_default=True)
@click.option(
    "--token",
    "tokens",
    multiple=True,
    metavar="TOKEN=SCOPE",
    help="Accepted token, scope read or edit; repeatable. Default: demo-edit-token=edit, demo-read-token=read.",
)
@click.option(
    "--rate-limit",
    type=click.IntRange(min=1),
    default=1200,
    show_default=True,
    help="Requests per window per token.",
)
@click.option(
    "--rate-window",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    show_default=True,
    metavar="SECONDS",
)
@click.option(
    "--block-seconds",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Block after going over. Default: the window.",
)
@click.option(
    "--latency-ms", type=click.FloatRange(min=0), default=0.0, help="Fault: added to every answer."
)
@click.option(
    "--jitter-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Fault: random extra latency, up to this.",
)
@click.option(
    "--error-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Fault: share of requests answered 500/502/503.",
)
@click.option(
    "--drop-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Fault: share of connections dropped before any effect.",
)
@click.option(
    "--drop-after-write-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Fault: share of PATCH/DELETE dropped after being applied.",
)
@click.option(
    "--write-lag",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="SECONDS",
    help="Fault: PATCHes become visible this much later.",
)
@click.option(
    "--churn-insert",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Fault: logs inserted (dated inside the stored range) on every list.",
)
@click.option(
    "--churn-delete",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Fault: random logs deleted on every list.",
)
@click.option(
    "--fault-seed", type=int, default=0, show_default=True, help="Same seed, same faults."
)
@click.option(
    "--ids",
    "log_ids",
    type=click.Choice(["cloudflare", "ulid", "uuid7", "hex64"]),
    default="cloudflare",
    show_default=True,
    help="Id format of generated logs: cloudflare = UUIDv7 from 2026-10-08, ULID before.",
)
@click.option(
    "--account-limit",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="A second limiter: over N requests per --account-window, 429 code 10040 (0: off).",
)
@click.option(
    "--account-window", type=click.FloatRange(min=0, min_open=True), default=60.0,
    show_default=True, metavar="SECONDS",
)  # fmt: skip
@click.option(
    "--ip-limit", type=click.IntRange(min=0), default=0, metavar="N",
    help="Requests per second per client IP, 429 code 1015 over it (Cloudflare: 200; 0: off).",
)  # fmt: skip
@click.option(
    "--policy-name", default="default", show_default=True,
    help='The policy name in Ratelimit headers ("default", "burst").',
)  # fmt: skip
@click.option(
    "--legacy-headers", is_flag=True, help="Also send x-ratelimit-limit/-remaining/-reset."
)
@click.option(
    "--no-list-feedback", is_flag=True,
    help="Leave feedback and score out of list entries (the schema does not promise them).",
)  # fmt: skip
@click.option("--access-log", is_flag=True, help="Log every request.")
def emulator_serve_command(
    host: str,
    port: int,
    seed_file: str | None,
    generate: int | None,
    random_seed: int,
    shift_to_yesterday: bool,
    db: str,
    account_id: str,
    gateway_id: str,
    tokens: tuple[str, ...],
    rate_limit: int,
    rate_window: float,
    block_seconds: float | None,
    latency_ms: float,
    jitter_ms: float,
    error_rate: float,
    drop_rate: float,
    drop_after_write_rate: float,
    write_lag: float,
    churn_insert: int,
    churn_delete: int,
    fault_seed: int,
    log_ids: str,
    account_limit: int,
    account_window: float,
    ip_limit: int,
    policy_name: str,
    legacy_headers: bool,
    no_list_feedback: bool,
    access_log: bool,
) -> None:
    """Serve the emulated Logs API until Ctrl-C or SIGTERM; prints its base URL and tokens.

    Loads the bundled sample (20,000 logs over 7 days, moved so the newest day is yesterday)
    unless told otherwise. Point a job's base_url, or the official SDK's base_url, at the
    printed URL and use one of the printed tokens.

    \b
    Examples:
      aigw-feedback emulator serve
      aigw-feedback emulator serve --port 0 --generate 5000 --random-seed 7
      aigw-feedback emulator serve --error-rate 0.05 --write-lag 2 --churn-insert 3
      aigw-feedback emulator serve --account-limit 100 --no-list-feedback --policy-name burst
      CLOUDFLARE_API_TOKEN=demo-edit-token aigw-feedback run jobs/nightly.toml \\
          --base-url http://127.0.0.1:8787/client/v4
    """
    from pathlib import Path

    from pipeline.emulator.server import ServeOptions, serve
    from pipeline.emulator.settings import EmulatorSettings

    if seed_file is not None and generate is not None:
        raise click.UsageError("use --seed FILE or --generate N, not both")
    try:
        settings = EmulatorSettings(
            **({"tokens": t} if (t := _token_option(tokens)) else {}),
            rate_limit_requests=rate_limit,
            rate_limit_window=rate_window,
            block_seconds=block_seconds,
            latency_ms=latency_ms,
            jitter_ms=jitter_ms,
            error_rate=error_rate,
            drop_rate=drop_rate,
            drop_after_write_rate=drop_after_write_rate,
            write_lag_seconds=write_lag,
            churn_insert_per_list=churn_insert,
            churn_delete_per_list=churn_delete,
            seed=fault_seed,
        ).updated(
            {
                "log_ids": log_ids,
                "account_limit_requests": account_limit,
                "account_limit_window": account_window,
                "ip_limit_per_second": ip_limit,
                "ratelimit_policy_name": policy_name,
                "legacy_ratelimit_headers": legacy_headers,
                "list_feedback": not no_list_feedback,
            }
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    options = ServeOptions(
        host=host,
        port=port,
        db=db,
        seed_file=Path(seed_file) if seed_file else None,
        generate=generate,
        random_seed=random_seed,
        shift_to_yesterday=shift_to_yesterday,
        account_id=account_id,
        gateway_id=gateway_id,
        settings=settings,
        access_log=access_log,
    )
    try:
        serve(options, echo=click.echo)
    except OSError as exc:
        raise click.UsageError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


COMMANDS = [emulator_group]
