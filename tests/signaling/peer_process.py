"""A participant in its own process, for liveness tests: connects, joins, prints `joined`, idles."""

from __future__ import annotations

import asyncio
import sys

import socketio


async def main(url: str, token: str) -> None:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=5)
    ack = await client.call("join", {}, timeout=5)
    print("joined" if ack.get("ok") else f"refused {ack}", flush=True)
    await client.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
