"""What every benchmark does with a server process it measures: pick a port, wait until it answers."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import Callable

import aiohttp


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_serving(url: str, exit_code: Callable[[], int | None], timeout: float = 30) -> None:
    """Poll `url` until it answers (any status); RuntimeError if the process exits or time runs out."""
    async with aiohttp.ClientSession() as http:
        try:
            async with asyncio.timeout(timeout):
                while (code := exit_code()) is None:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(url):
                            return
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise RuntimeError(f"nothing answered {url} within {timeout} s") from None
    raise RuntimeError(f"the server exited with code {code} before answering {url}")


async def start_redis() -> tuple[asyncio.subprocess.Process, str]:
    """A redis-server of the benchmark's own (no persistence) on a free port, and its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is missing: apt-get install -y redis-server")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(100):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return proc, f"redis://127.0.0.1:{port}/0"
        await asyncio.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")
