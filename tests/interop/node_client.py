"""Drives tests/interop/client.mjs (the official Node socket.io-client) over its stdin/stdout."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import REPO, require_node_modules, require_part

SCRIPT = REPO / "tests" / "interop" / "client.mjs"


def require_node() -> str:
    """The `node` binary and the npm-installed socket.io-client it loads."""
    node = shutil.which("node")
    require_part(node is not None, "node", "apt-get install -y nodejs npm")
    assert node is not None
    require_node_modules("tests/interop")
    return node


class NodeClient:
    """One Node process holding one socket.io-client socket; records every line it prints."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self.stderr = b""
        self._arrived = asyncio.Event()
        self._ids = itertools.count(1)
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, node: str) -> NodeClient:
        proc = await asyncio.create_subprocess_exec(
            node,
            str(SCRIPT),
            cwd=Path(SCRIPT).parent,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        client = cls(proc)
        await client.wait_for(lambda line: line.get("event") == "ready")
        return client

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(json.loads(raw))
            self._arrived.set()
        self._arrived.set()

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10) -> dict[str, Any]:
        """The first printed line satisfying `predicate`, waiting for it to arrive."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for line in self.lines:
                        if predicate(line):
                            return line
                    if self._reader.done():
                        raise AssertionError("the Node client exited")
                    self._arrived.clear()
                    await self._arrived.wait()
        except (TimeoutError, AssertionError):
            stderr = await self._stderr()
            raise AssertionError(f"no matching line from Node; got {self.lines}; stderr {stderr!r}") from None

    async def _stderr(self) -> bytes:
        if self.proc.stderr is not None and self.proc.returncode is not None:
            self.stderr = await self.proc.stderr.read()
        return self.stderr

    def events(self, name: str) -> list[Any]:
        return [line["data"] for line in self.lines if line.get("event") == name]

    async def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        await self.proc.stdin.drain()

    async def connect(self, url: str, token: str | None, transports: list[str], path: str = "/socket.io/") -> str:
        """Connect; returns the printed event: "connect" or "connect_error"."""
        await self.send(op="connect", url=url, path=path, token=token, transports=transports)
        line = await self.wait_for(lambda line: line.get("event") in ("connect", "connect_error"))
        return line["event"]

    async def call(self, event: str, data: Any = None) -> Any:
        """Emit with an ack through socket.io-client and return the ack Node received."""
        command_id = next(self._ids)
        await self.send(op="emit", id=command_id, event=event, data=data if data is not None else {})
        line = await self.wait_for(lambda line: line.get("id") == command_id)
        assert "ack" in line, line
        return line["ack"]

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ConnectionError):
                await self.send(op="close")
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await self._reader
