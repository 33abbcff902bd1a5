"""A real `roomwire serve` node in its own process, for tests of many nodes on one Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from typing import IO

import aiohttp

from tests.conftest import SECRET, free_port


@dataclass
class NodeProcess:
    redis_url: str
    dev: bool = False
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None
    log: IO[bytes] = field(default_factory=tempfile.TemporaryFile)

    @property
    def node_id(self) -> str:
        return f"node{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> NodeProcess:
        env = {**os.environ, "ROOMWIRE_SECRET": SECRET, "ROOMWIRE_REDIS_URL": self.redis_url}
        command = [sys.executable, "-m", "roomwire.signaling.cli", "serve"]
        command += ["--port", str(self.port), "--node-id", self.node_id]
        self.process = await asyncio.create_subprocess_exec(
            *command, *(["--dev"] if self.dev else []), "--log-level", "warning",
            env=env, stdout=self.log, stderr=self.log,
        )  # fmt: skip
        async with aiohttp.ClientSession() as http, asyncio.timeout(30):
            while True:
                try:
                    async with http.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return self
                except aiohttp.ClientConnectionError:
                    assert self.process.returncode is None, f"node on port {self.port} exited: {self.output()}"
                    await asyncio.sleep(0.1)

    def output(self) -> str:
        """What the node logged (its last 4,000 characters), for a failing test's report."""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def kill(self) -> None:
        """kill -9: no goodbye, its heartbeat and leases just stop."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
