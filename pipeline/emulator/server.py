"""Serve the emulator over real HTTP with uvicorn, on loopback by default.

* ``running_emulator(...)``: a context manager that starts uvicorn in a background thread on a free
  port (port 0), waits until it accepts connections, yields the URLs and tokens, and stops it
  cleanly (no thread, socket or warning left behind). For tests, the demo and the benchmarks.
* ``serve(options)``: what ``aigw-feedback emulator serve`` runs in the foreground: seeds the store,
  prints the base URL and the demo tokens, serves until Ctrl-C or SIGTERM, and returns normally.

Dropped connections (a fault) are real here: the app asks this module's wrapper to abort the
client's socket, so httpx sees the server disconnect without an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

from pipeline.emulator.app import create_app
from pipeline.emulator.control import EmulatorControl
from pipeline.emulator.seed import generate_logs, load_sample
from pipeline.emulator.settings import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_GATEWAY_ID,
    EmulatorSettings,
)
from pipeline.emulator.store import EmulatorStore

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
_START_TIMEOUT = 10.0


@dataclass(frozen=True)
class RunningEmulator:
    """A started emulator: where it listens, which tokens it accepts, and its store."""

    base_url: str  # http://127.0.0.1:PORT/client/v4
    admin_url: str  # http://127.0.0.1:PORT/__emulator
    root_url: str  # http://127.0.0.1:PORT
    edit_token: str
    read_token: str
    store: EmulatorStore
    account_id: str
    gateway_id: str
    app: Starlette = field(repr=False)

    @property
    def control(self) -> EmulatorControl:
        """The live settings and statistics (same object the admin routes use)."""
        control: EmulatorControl = self.app.state.control
        return control

    @property
    def logs_url(self) -> str:
        """The logs collection URL of the default gateway."""
        return (
            f"{self.base_url}/accounts/{self.account_id}/ai-gateway/gateways/{self.gateway_id}/logs"
        )


class _Server(uvicorn.Server):
    """uvicorn's server, woken at once when asked to stop instead of at its next 0.1 s tick."""

    _wake: asyncio.Event | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def main_loop(self) -> None:
        # uvicorn's own loop, except that the 0.1 s tick can be cut short by request_exit.
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=0.1)
            should_exit = await self.on_tick(counter)

    def request_exit(self) -> None:
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop may have closed already
                loop.call_soon_threadsafe(wake.set)


def _with_abort(app: ASGIApp, connections: Callable[[], Iterable[Any]]) -> ASGIApp:
    """Give the app a way to abort the current client's socket (the dropped-connection fault).

    ``connections`` returns uvicorn's live protocol objects; the one serving this request's client
    address has its transport aborted, so the client sees a disconnect without an answer.
    """

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            client = scope.get("client")

            def abort() -> None:
                for conn in list(connections()):
                    if getattr(conn, "client", None) == client:
                        transport = getattr(conn, "transport", None)
                        if transport is not None:
                            transport.abort()
                        return

            extensions = scope.get("extensions")
            if extensions is None:
                extensions = scope["extensions"] = {}
            extensions["emulator.abort"] = abort
        await app(scope, receive, send)

    return wrapped


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto is
    # TCP, and without it every answer waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def uvicorn_config(
    app: ASGIApp, host: str, port: int, *, quiet: bool, access_log: bool
) -> uvicorn.Config:
    """The uvicorn settings every emulator server uses (also the benchmark's baseline)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="off",
        http="h11",
        ws="none",
        loop="asyncio",
        access_log=access_log,
        log_level="warning",
        log_config=None if quiet else uvicorn.config.LOGGING_CONFIG,
        timeout_graceful_shutdown=5,
    )


@contextlib.contextmanager
def running_emulator(
    settings: EmulatorSettings | None = None,
    store: EmulatorStore | None = None,
    logs: Iterable[Mapping[str, Any]] | None = None,
    *,
    account_id: str = DEFAULT_ACCOUNT_ID,
    gateway_id: str = DEFAULT_GATEWAY_ID,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[Any]] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> Iterator[RunningEmulator]:
    """Serve the emulator in a background thread for the duration of the ``with`` block.

    ``logs`` are inserted into (``account_id``, ``gateway_id``), which exists even when empty.
    A store passed in is left open; one created here (in memory) is closed on exit.
    """
    settings = settings or EmulatorSettings()
    own_store = store is None
    active_store = store if store is not None else EmulatorStore()
    app = create_app(settings, active_store, clock, sleep=sleep or asyncio.sleep)
    control: EmulatorControl = app.state.control
    control.default_account_id, control.default_gateway_id = account_id, gateway_id
    active_store.ensure_gateway(account_id, gateway_id)
    if logs is not None:
        active_store.insert_logs(account_id, gateway_id, logs)

    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    box: dict[str, uvicorn.Server] = {}
    wrapped = _with_abort(app, lambda: box["server"].server_state.connections)
    server = box["server"] = _Server(
        uvicorn_config(wrapped, host, bound_port, quiet=True, access_log=False)
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="aigw-emulator", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the emulator did not start; see the log above")
            time.sleep(0.002)
        root = f"http://{_url_host(host)}:{bound_port}"
        yield RunningEmulator(
            base_url=f"{root}/client/v4",
            admin_url=f"{root}/__emulator",
            root_url=root,
            edit_token=settings.token_with_scope("edit") or "",
            read_token=settings.token_with_scope("read") or "",
            store=active_store,
            account_id=account_id,
            gateway_id=gateway_id,
            app=app,
        )
    finally:
        server.request_exit()
        thread.join(timeout=15)
        sock.close()
        if own_store:
            active_store.close()


@dataclass(frozen=True)
class ServeOptions:
    """What ``aigw-feedback emulator serve`` was asked for."""

    host: str = "127.0.0.1"
    port: int = 8787
    db: str = ":memory:"
    seed_file: Path | None = None
    generate: int | None = None
    random_seed: int = 0
    shift_to_yesterday: bool = True
    account_id: str = DEFAULT_ACCOUNT_ID
    gateway_id: str = DEFAULT_GATEWAY_ID
    settings: EmulatorSettings = field(default_factory=EmulatorSettings)
    access_log: bool = False


def seed_store(store: EmulatorStore, options: ServeOptions, now: datetime | None = None) -> str:
    """Fill the store as the options ask; returns one line saying what was loaded.

    ``--generate N`` makes N logs over the 7 days before today (UTC); ``--seed FILE`` loads a logs
    file; neither loads the committed sample, unless the database already holds logs.
    """
    now = now or datetime.now(UTC)
    account, gateway = options.account_id, options.gateway_id
    store.ensure_gateway(account, gateway)
    if options.generate is not None:
        end = datetime(now.year, now.month, now.day, tzinfo=UTC)
        logs = generate_logs(
            options.generate,
            seed=options.random_seed,
            start=end - timedelta(days=7),
            end=end,
            ids=options.settings.log_ids,
        )
        source = f"generated {options.generate} logs (random seed {options.random_seed})"
    elif options.seed_file is not None or store.count(account, gateway) == 0:
        logs = load_sample(
            options.seed_file, shift_to_yesterday=options.shift_to_yesterday, now=now
        )
        source = f"loaded {len(logs)} logs from {options.seed_file or 'the bundled sample'}"
    else:
        return f"kept {store.count(account, gateway)} logs already in {options.db}"
    store.insert_logs(account, gateway, logs)
    if logs:
        days = sorted({str(log["created_at"])[:10] for log in logs})
        source += f", {days[0]} .. {days[-1]}"
    return source


def serve(options: ServeOptions, *, echo: Callable[[str], None] = print) -> None:
    """Seed, print how to connect, and serve until Ctrl-C or SIGTERM; then return normally.

    The signal handlers are ours from the start (a Ctrl-C while the sample loads stops cleanly
    too); uvicorn takes them over while serving and re-raises the stopping signal afterwards,
    which then lands here harmlessly, so the command ends quietly with exit code 0.
    """
    stop = threading.Event()
    box: dict[str, uvicorn.Server] = {}

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
        if "server" in box:
            box["server"].should_exit = True

    in_main = threading.current_thread() is threading.main_thread()
    previous = (
        {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        if in_main
        else {}
    )
    try:
        with EmulatorStore(options.db) as store:
            loaded = seed_store(store, options)
            if stop.is_set():
                return
            _serve_store(store, options, loaded, box, echo)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    echo("emulator stopped")


def _serve_store(
    store: EmulatorStore,
    options: ServeOptions,
    loaded: str,
    box: dict[str, uvicorn.Server],
    echo: Callable[[str], None],
) -> None:
    app = create_app(options.settings, store)
    control: EmulatorControl = app.state.control
    control.default_account_id = options.account_id
    control.default_gateway_id = options.gateway_id
    with contextlib.closing(_bind(options.host, options.port)) as sock:
        port = sock.getsockname()[1]
        wrapped = _with_abort(app, lambda: box["server"].server_state.connections)
        server = box["server"] = uvicorn.Server(
            uvicorn_config(wrapped, options.host, port, quiet=False, access_log=options.access_log)
        )
        root = f"http://{_url_host(options.host)}:{port}"
        settings = options.settings
        echo("AI Gateway Logs API emulator")
        echo(f"  base URL    {root}/client/v4")
        echo(f"  account_id  {options.account_id}")
        echo(f"  gateway_id  {options.gateway_id}")
        for token, scope in settings.tokens.items():
            echo(f"  {scope:<5} token {token}")
        echo(f"  logs        {loaded}")
        echo(
            f"  rate limit  {settings.rate_limit_requests} requests / "
            f"{settings.rate_limit_window:g} s per token"
        )
        echo(f"  admin       {root}/__emulator/stats")
        echo("Press Ctrl-C to stop.")
        server.run(sockets=[sock])
