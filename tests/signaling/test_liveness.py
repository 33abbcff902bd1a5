"""A participant that dies or goes silent is reported `leave` in time (real subprocess clients)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.sio_client import joined_client

PEER = Path(__file__).with_name("peer_process.py")


async def start_peer(url: str, token: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(PEER), url, token, stdout=asyncio.subprocess.PIPE, env={**os.environ}
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 15)
    assert line.strip() == b"joined", line
    return proc


async def leave_seconds(watcher, identity: str, act) -> float:
    started = time.monotonic()
    act()
    await watcher.wait_for(
        "presence", lambda e: e["type"] == "leave" and e["participant"]["identity"] == identity, timeout=15
    )
    return time.monotonic() - started


async def test_killed_client_process_leaves_within_two_seconds(running):
    watcher, _ = await joined_client(running.url, running.token("live", "watcher"))
    proc = await start_peer(running.url, running.token("live", "doomed"))
    await watcher.wait_for("presence", lambda e: e["participant"]["identity"] == "doomed")
    elapsed = await leave_seconds(watcher, "doomed", proc.kill)
    await proc.wait()
    assert elapsed < 2.0
    await watcher.close()


@pytest.mark.timeout(60)
async def test_silent_client_leaves_within_ten_seconds(running):
    watcher, _ = await joined_client(running.url, running.token("live", "watcher"))
    proc = await start_peer(running.url, running.token("live", "frozen"))
    try:
        elapsed = await leave_seconds(watcher, "frozen", lambda: os.kill(proc.pid, signal.SIGSTOP))
        assert elapsed < 10.0
        # it is gone for everyone, and nothing else was disturbed
        assert [p["identity"] for p in await running.server.participants("live")] == ["watcher"]
        assert (await watcher.call("message", {"data": "still here"}))["ok"]
    finally:
        proc.kill()
        await proc.wait()
    await watcher.close()


@pytest.mark.timeout(60)
async def test_silent_client_leaves_while_the_room_is_busy(running):
    """The broadcast that finds a timed-out client must not wait for that client's own leave."""
    watcher, _ = await joined_client(running.url, running.token("live", "watcher"))
    proc = await start_peer(running.url, running.token("live", "frozen"))
    os.kill(proc.pid, signal.SIGSTOP)
    started = time.monotonic()
    try:
        while not any(
            e["type"] == "leave" and e["participant"]["identity"] == "frozen" for e in watcher.events["presence"]
        ):
            assert time.monotonic() - started < 10.0, "the silent client was not reported within 10 s"
            ack = await watcher.call("update", {"metadata": {"tick": time.monotonic()}}, timeout=3)
            assert ack["ok"], ack
            await asyncio.sleep(0.05)
        assert [p["identity"] for p in await running.server.participants("live")] == ["watcher"]
    finally:
        proc.kill()
        await proc.wait()
    await watcher.close()
