"""A real redis-server on a free port for the tests that need one (stopped at teardown), which a
test may restart (without persistence: it comes back empty) or stall (SIGSTOP)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from tests.conftest import free_port, require_redis_server


class RedisProcess:
    def __init__(self) -> None:
        self.binary = require_redis_server()
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)  # a stalled server must be able to exit
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    async def restart(self, down_for: float) -> None:
        """Kill it (no goodbye, no data kept) and start an empty one on the same port later."""
        self.stop()
        await asyncio.sleep(down_for)
        await asyncio.to_thread(self.start)

    async def stall(self, seconds: float) -> None:
        """Freeze it (SIGSTOP) for `seconds`: connections stay open, nothing is answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.process.send_signal(signal.SIGCONT)


@contextmanager
def running_redis_process() -> Iterator[RedisProcess]:
    server = RedisProcess()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def running_redis() -> Iterator[str]:
    with running_redis_process() as server:
        yield server.url
