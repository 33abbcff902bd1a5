"""Echo bot: sends every person's camera and microphone back to the room.

    python examples/echo_bot.py http://localhost:8080 demo [SECONDS]

Uses $ROOMWIRE_TOKEN if set, else asks a `roomwire serve --dev` server for a token.
"""

import asyncio
import os
import sys

from roomwire.media.bot import Bot, dev_token
from roomwire.media.bot.sinks import Echo


async def main(url: str, room: str, seconds: float | None) -> None:
    token = os.environ.get("ROOMWIRE_TOKEN") or (await dev_token(url, room, "echo"))[0]
    async with Bot.connect(url, token) as bot:
        Echo(bot)  # follows the latest participant that is not a bot
        bot.on_track(lambda track: print(f"{track.identity} publishes {track.kind}", flush=True))
        print(f"echo bot in {bot.room} as {bot.identity}", flush=True)
        await asyncio.wait_for(bot.closed.wait(), seconds)  # TimeoutError ends a timed run


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else None))
    except (TimeoutError, KeyboardInterrupt):
        pass
