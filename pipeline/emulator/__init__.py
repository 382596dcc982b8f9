"""A local, faithful stand-in for Cloudflare's AI Gateway Logs API.

Used by the demo, the tests and the benchmarks so that nothing needs an account or the network, and
useful on its own to anyone building on AI Gateway. Parts:

    settings.py   EmulatorSettings: tokens, rate limit, faults (frozen; changeable at runtime)
    app.py        create_app(): the Starlette ASGI app (routes, envelopes, auth, rate limit)
    filters.py    list/delete query parameters and the JSON ``filters`` -> SQL
    patch.py      PATCH body validation
    store.py      EmulatorStore: SQLite (file or memory), any number of gateways
    faults.py     latency, 5xx, dropped connections, write lag, churn — seeded
    ratelimit.py  per-token sliding window with Cloudflare's headers and block period
    control.py    the live state behind ``/__emulator/`` (admin.py): stats, config, reset
    seed.py       deterministic log generator and the committed sample's loader
    server.py     uvicorn: running_emulator() in a thread, serve() for the CLI
"""

from __future__ import annotations

from pipeline.emulator.app import create_app
from pipeline.emulator.control import EmulatorControl
from pipeline.emulator.faults import DroppedConnection
from pipeline.emulator.seed import SAMPLE_LOGS_PATH, generate_logs, load_sample
from pipeline.emulator.server import RunningEmulator, ServeOptions, running_emulator, serve
from pipeline.emulator.settings import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_EDIT_TOKEN,
    DEFAULT_GATEWAY_ID,
    DEFAULT_READ_TOKEN,
    EmulatorSettings,
)
from pipeline.emulator.store import EmulatorStore

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_EDIT_TOKEN",
    "DEFAULT_GATEWAY_ID",
    "DEFAULT_READ_TOKEN",
    "SAMPLE_LOGS_PATH",
    "DroppedConnection",
    "EmulatorControl",
    "EmulatorSettings",
    "EmulatorStore",
    "RunningEmulator",
    "ServeOptions",
    "create_app",
    "generate_logs",
    "load_sample",
    "running_emulator",
    "serve",
]
