"""What every benchmark does with a server process it measures: pick a port, wait until it answers."""

from __future__ import annotations

import asyncio
import contextlib
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
