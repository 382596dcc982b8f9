"""Shared fixtures: the AI Gateway Logs API emulator, in-process and over real HTTP.

* ``emulator_logs``   240 generated logs over 2026-11-20..21 (same every run; fresh copies per test)
* ``emulator_clock``  a ManualClock: ``clock()`` reads it, ``clock.advance(s)`` or
                      ``await clock.sleep(s)`` moves it; nothing ever waits for real
* ``emulator_store``  an in-memory EmulatorStore holding ``emulator_logs`` in the default gateway
* ``emulator_app``    the Starlette app over that store, driven by ``emulator_clock``; mount it with
                      ``httpx.ASGITransport(app=emulator_app)``
* ``emulator``        the same app with helpers: ``.call(method, path, ...)`` (sync, in-process),
                      ``.client()`` (an ``httpx.AsyncClient``), ``.control``, tokens and ids
* ``emulator_server`` the same store and clock served by uvicorn on 127.0.0.1 (free port) in a
                      thread; yields a ``RunningEmulator`` (``.base_url``, ``.edit_token``...)
* ``anyio_backend``   "asyncio", for ``@pytest.mark.anyio`` tests
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import settings
from starlette.applications import Starlette

from pipeline.emulator.app import create_app
from pipeline.emulator.control import EmulatorControl
from pipeline.emulator.seed import generate_logs
from pipeline.emulator.server import RunningEmulator, running_emulator
from pipeline.emulator.settings import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_EDIT_TOKEN,
    DEFAULT_GATEWAY_ID,
    DEFAULT_READ_TOKEN,
    EmulatorSettings,
)
from pipeline.emulator.store import EmulatorStore

# Property tests check behaviour, not speed: no per-example deadline (tests never assert on time,
# and a loaded 2-core CI machine made a 200 ms deadline fail a correct example).
settings.register_profile("no-deadline", deadline=None)
settings.load_profile("no-deadline")

EMULATOR_ORIGIN = "http://emulator.test"
LOGS_PATH = f"/accounts/{DEFAULT_ACCOUNT_ID}/ai-gateway/gateways/{DEFAULT_GATEWAY_ID}/logs"


class ManualClock:
    """Time that moves only when told to. Use as the emulator's clock and sleep."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


@dataclass
class InProcessEmulator:
    """The emulator app mounted in-process, with what tests need to talk to it and check it."""

    app: Starlette
    store: EmulatorStore
    clock: ManualClock
    account_id: str = DEFAULT_ACCOUNT_ID
    gateway_id: str = DEFAULT_GATEWAY_ID
    edit_token: str = DEFAULT_EDIT_TOKEN
    read_token: str = DEFAULT_READ_TOKEN
    base_url: str = f"{EMULATOR_ORIGIN}/client/v4"
    logs_path: str = LOGS_PATH

    @property
    def control(self) -> EmulatorControl:
        control: EmulatorControl = self.app.state.control
        return control

    def transport(self, **kwargs: Any) -> httpx.ASGITransport:
        return httpx.ASGITransport(app=self.app, **kwargs)

    def client(self, token: str | None = DEFAULT_EDIT_TOKEN) -> httpx.AsyncClient:
        """An async client on ``base_url``; ``token=None`` sends no Authorization header."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(
            transport=self.transport(), base_url=self.base_url, headers=headers
        )

    def call(
        self,
        method: str,
        path: str = "",
        *,
        token: str | None = DEFAULT_EDIT_TOKEN,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request, synchronously. ``path`` is relative to the logs collection unless it
        starts with ``/client`` or ``/__emulator``."""
        if not path.startswith(("/client", "/__emulator")):
            path = "/client/v4" + self.logs_path + path

        async def go() -> httpx.Response:
            async with httpx.AsyncClient(
                transport=self.transport(), base_url=EMULATOR_ORIGIN
            ) as client:
                sent = {"Authorization": f"Bearer {token}"} if token else {}
                sent.update(headers or {})
                response = await client.request(method, path, headers=sent, **kwargs)
                await response.aread()
                return response

        return asyncio.run(go())


@pytest.fixture(autouse=True, scope="session")
def private_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests (and the processes they start) never touch the real ~/.cache budget state."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        yield


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def _emulator_logs_master() -> list[dict[str, Any]]:
    return generate_logs(240, seed=11, start="2026-11-20T00:00:00Z", end="2026-11-22T00:00:00Z")


@pytest.fixture
def emulator_logs(_emulator_logs_master: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """240 realistic logs (two days, several providers, ties, feedback on a few); copies."""
    return [dict(log) for log in _emulator_logs_master]


@pytest.fixture
def emulator_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def emulator_store(emulator_logs: list[dict[str, Any]]) -> Iterator[EmulatorStore]:
    with EmulatorStore() as store:
        store.insert_logs(DEFAULT_ACCOUNT_ID, DEFAULT_GATEWAY_ID, emulator_logs)
        yield store


@pytest.fixture
def emulator_app(emulator_store: EmulatorStore, emulator_clock: ManualClock) -> Starlette:
    return create_app(
        EmulatorSettings(), emulator_store, emulator_clock, sleep=emulator_clock.sleep
    )


@pytest.fixture
def emulator(
    emulator_app: Starlette, emulator_store: EmulatorStore, emulator_clock: ManualClock
) -> InProcessEmulator:
    return InProcessEmulator(emulator_app, emulator_store, emulator_clock)


@pytest.fixture
def emulator_server(
    emulator_store: EmulatorStore, emulator_clock: ManualClock
) -> Iterator[RunningEmulator]:
    """The emulator over real HTTP on 127.0.0.1; its clock is ``emulator_clock``."""
    with running_emulator(
        EmulatorSettings(), emulator_store, clock=emulator_clock, sleep=emulator_clock.sleep
    ) as server:
        yield server
