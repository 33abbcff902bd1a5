"""Recorder bot: records every participant of a room to DIR/<identity>.webm.

    python examples/recorder_bot.py http://localhost:8080 demo ./recordings SECONDS

Uses $ROOMWIRE_TOKEN if set, else asks a `roomwire serve --dev` server for a token.
"""

import asyncio
import os
import sys

from roomwire.media.bot import Bot, dev_token
from roomwire.media.bot.sinks import Recorder


async def main(url: str, room: str, directory: str, seconds: float) -> None:
    token = os.environ.get("ROOMWIRE_TOKEN") or (await dev_token(url, room, "recorder"))[0]
    async with Bot.connect(url, token) as bot:
        recorder = Recorder(directory).attach(bot)
        print(f"recording room {bot.room} for {seconds:g} s", flush=True)
        await asyncio.sleep(seconds)
        for path in await recorder.close():  # finish the files before leaving
            print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
