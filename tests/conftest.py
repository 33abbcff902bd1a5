"""Shared fixtures: a real roomwire server on an ephemeral port, tokens, and required parts."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from roomwire.signaling import RUNNER_OPTIONS, Grants, SignalingServer
from roomwire.signaling.web_routes import add_web_routes
from roomwire.web import WEB_DIR

SECRET = "test-secret-0123456789-abcdefghij"
REPO = Path(__file__).resolve().parent.parent


def require_part(available: bool, what: str, how: str) -> None:
    """In CI (ROOMWIRE_REQUIRE_ALL=1) a missing part fails the test; on a laptop it skips loudly."""
    if available:
        return
    message = f"{what} is missing: {how}"
    if os.environ.get("ROOMWIRE_REQUIRE_ALL") == "1":
        pytest.fail(f"ROOMWIRE_REQUIRE_ALL=1 and {message}", pytrace=False)
    pytest.skip(f"SKIPPED LOUDLY: {message}")


def require_chromium() -> str:
    path = os.environ.get("ROOMWIRE_CHROMIUM", "/usr/bin/chromium")
    require_part(Path(path).exists(), f"Chromium ({path})", "apt-get install -y chromium")
    return path


def require_redis_server() -> str:
    path = shutil.which("redis-server")
    require_part(path is not None, "redis-server", "apt-get install -y redis-server")
    assert path is not None
    return path


def require_node_modules(folder: str) -> Path:
    modules = REPO / folder / "node_modules"
    require_part(modules.is_dir(), f"{folder}/node_modules", f"npm ci --prefix {folder}")
    return modules


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    url: str
    server: SignalingServer
    app: web.Application
    prefix: str = ""

    def token(self, room: str | None, identity: str, **claims: Any) -> str:
        grants = claims.pop("grants", None)
        if isinstance(grants, dict):
            grants = Grants(**grants)
        return self.server.issuer.mint(identity=identity, room=room, grants=grants, **claims)

    def admin_token(self) -> str:
        return self.token(None, "admin", grants=Grants(admin=True))

    @property
    def base(self) -> str:
        """The URL of roomwire's routes (the app's URL plus the embedding prefix)."""
        return self.url + self.prefix


MakeServer = Callable[..., Awaitable[RunningServer]]


async def start_app(app: web.Application) -> tuple[web.AppRunner, str]:
    # as roomwire serve runs, with a shorter shutdown for quick tests
    runner = web.AppRunner(app, **{**RUNNER_OPTIONS, "shutdown_timeout": 1})
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return runner, f"http://127.0.0.1:{port}"


class Servers:
    """Real roomwire servers on ephemeral ports; `close()` stops them all."""

    def __init__(self) -> None:
        self._runners: list[web.AppRunner] = []

    async def start(
        self, *, app: web.Application | None = None, prefix: str = "", web_client: bool = False, **options: Any
    ) -> RunningServer:
        """`options` go to SignalingServer; `web_client` adds the browser client's routes."""
        options.setdefault("secret", SECRET)
        server = SignalingServer(**options)
        app = app or web.Application()
        server.attach(app, prefix=prefix)
        if web_client:
            add_web_routes(app, prefix=prefix, web_dir=WEB_DIR, dev=server.dev)
        runner, url = await start_app(app)
        self._runners.append(runner)
        return RunningServer(url=url, server=server, app=app, prefix=prefix)

    async def close(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()


@pytest.fixture
def redis_process() -> Iterator[Any]:
    """A real redis-server of this test's own, which the test may restart or stall."""
    from tests.signaling.redis_server import running_redis_process

    with running_redis_process() as server:
        yield server


@pytest.fixture
async def make_server() -> AsyncIterator[MakeServer]:
    """`await make_server(**SignalingServer options)` starts a real server; all stop at teardown."""
    servers = Servers()
    yield servers.start
    await servers.close()


@pytest.fixture
async def running(make_server: MakeServer) -> RunningServer:
    """A default server: in-memory backend, no media."""
    return await make_server()
