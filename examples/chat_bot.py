"""Chat bot: answers every chat message in a room, in the web client's chat format.

    python examples/chat_bot.py http://localhost:8080 demo [SECONDS]

Uses $ROOMWIRE_TOKEN if set, else asks a `roomwire serve --dev` server for a token.
"""

import asyncio
import os
import sys
import uuid

from roomwire.media.bot import Bot, Message, dev_token


async def main(url: str, room: str, seconds: float | None) -> None:
    token = os.environ.get("ROOMWIRE_TOKEN") or (await dev_token(url, room, "chat bot"))[0]
    async with Bot.connect(url, token, subscribe=False) as bot:
        answered: set[str] = set()  # the web client may send a message over two paths

        async def answer(message: Message) -> None:
            data = message.data
            if not (isinstance(data, dict) and data.get("type") == "chat") or data.get("id") in answered:
                return
            answered.add(data.get("id"))
            name = bot.participants.get(message.sender, {}).get("name", message.sender)
            reply = {"type": "chat", "id": uuid.uuid4().hex, "text": f"{name} said: {data.get('text')}"}
            await bot.send(reply)  # to everyone else in the room

        bot.on_message(answer)
        print(f"chat bot in {bot.room} as {bot.identity}", flush=True)
        await asyncio.wait_for(bot.closed.wait(), seconds)


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else None))
    except (TimeoutError, KeyboardInterrupt):
        pass
