"""The bot library against a real signaling server (no media): presence, messages, reconnects."""

from __future__ import annotations

import asyncio

import pytest
from roomwire.media.bot import Bot, BotError, Message, dev_token

from tests.sio_client import joined_client

pytestmark = pytest.mark.timeout(60)


async def test_bot_joins_as_bot_and_follows_presence(running):
    alice, _ = await joined_client(running.url, running.token("r1", "alice"))
    joined: list[str] = []
    left: list[str] = []
    async with Bot.connect(running.url, running.token("r1", "bot-1", name="Bot One")) as bot:
        bot.on_join(lambda p: joined.append(p["identity"]))
        bot.on_leave(lambda p: left.append(p["identity"]))
        assert bot.identity == "bot-1" and bot.room == "r1"
        assert bot.me["transport"] == "bot" and bot.me["name"] == "Bot One"
        assert list(bot.participants) == ["alice"]
        assert not bot.media_available  # this server has no SFU

        event = await alice.wait_for("presence", lambda e: e["participant"]["identity"] == "bot-1")
        assert event["type"] == "join" and event["participant"]["transport"] == "bot"

        me = await bot.update(name="Bot Uno", metadata={"role": "greeter"})
        assert me["name"] == bot.me["name"] == "Bot Uno" and me["metadata"] == {"role": "greeter"}
        updated = await alice.wait_for("presence", lambda e: e["type"] == "update")
        assert updated["participant"]["name"] == "Bot Uno"

        bob, _ = await joined_client(running.url, running.token("r1", "bob"))
        await bot.wait_until(lambda b: "bob" in b.participants, timeout=5)
        await bob.close()
        await bot.wait_until(lambda b: "bob" not in b.participants, timeout=5)
        assert joined == ["bob"] and left == ["bob"]
    await alice.wait_for("presence", lambda e: e["type"] == "leave" and e["participant"]["identity"] == "bot-1")
    await alice.close()


async def test_bot_sends_and_receives_messages(running):
    alice, _ = await joined_client(running.url, running.token("r1", "alice"))
    async with Bot.connect(running.url, running.token("r1", "bot")) as bot:
        received: list[Message] = []
        bot.on_message(received.append)
        message_id = await bot.send({"text": "hello"})
        got = await alice.wait_for("message")
        assert got["from"] == "bot" and got["data"] == {"text": "hello"} and got["id"] == message_id

        ack = await alice.call("message", {"data": "hi bot", "to": "bot"})
        await bot.wait_until(lambda _: bool(received), timeout=5)
        assert received == [Message(sender="alice", data="hi bot", via="socket", id=ack["id"])]

        with pytest.raises(BotError) as error:
            await bot.send("x" * 70_000)
        assert error.value.code == "too_large"
    await alice.close()


async def test_refused_token_and_unreachable_server_raise_clear_errors(running):
    with pytest.raises(BotError) as refused:
        async with Bot.connect(running.url, "not-a-token"):
            pass
    assert refused.value.code == "unauthorized" and "refused" in refused.value.message

    with pytest.raises(BotError) as unreachable:
        async with Bot.connect("http://127.0.0.1:9", running.token("r1", "bot")):
            pass
    assert unreachable.value.code == "unreachable"
    with pytest.raises(BotError) as bad_url:
        Bot.connect("ftp://example", "t")
    assert bad_url.value.code == "bad_request"


async def test_publish_without_an_sfu_is_refused(running):
    from roomwire.media.sources import PatternVideoTrack

    async with Bot.connect(running.url, running.token("r1", "bot")) as bot:
        with pytest.raises(BotError) as error:
            await bot.publish(PatternVideoTrack(160, 120, 5))
        assert error.value.code == "not_found"


async def test_dev_token(make_server):
    dev = await make_server(dev=True)
    token, identity = await dev_token(dev.url, "r1", "Robo")
    assert identity.startswith("robo-")
    bot = await Bot.connect(dev.url, token)  # awaited rather than `async with`
    assert bot.identity == identity and bot.me["name"] == "Robo"
    await bot.close()
    assert bot.closed.is_set()
    plain = await make_server()
    with pytest.raises(BotError) as error:
        await dev_token(plain.url, "r1", "Robo")
    assert error.value.code == "not_found" and "--dev" in error.value.message


async def test_bot_reconnects_after_a_server_side_disconnect(running):
    alice, _ = await joined_client(running.url, running.token("r1", "alice"))
    async with Bot.connect(running.url, running.token("r1", "bot"), backoff=(0.1, 1.0)) as bot:
        reconnected = asyncio.Event()
        bot.on_reconnect(lambda _: reconnected.set())
        sid = next(s for s, c in running.server.sockets.connections.items() if c.identity == "bot")
        await running.server.sio.disconnect(sid)
        await alice.wait_for("presence", lambda e: e["type"] == "leave" and e["participant"]["identity"] == "bot")
        async with asyncio.timeout(10):
            await reconnected.wait()
        rejoined = await alice.wait_for(
            "presence", lambda e: e["type"] == "join" and e["participant"]["identity"] == "bot" and e["offset"] > 3
        )
        assert rejoined["participant"]["transport"] == "bot"
        assert bot.reconnects == 1 and list(bot.participants) == ["alice"]
        assert (await bot.send("back")) and not bot.closed.is_set()
    await alice.close()


async def test_kicked_bot_does_not_reconnect(running):
    async with Bot.connect(running.url, running.token("r1", "bot"), backoff=(0.1, 1.0)) as bot:
        assert await running.server.kick("r1", "bot", "removed")
        async with asyncio.timeout(5):
            await bot.closed.wait()
        assert bot.kicked == "removed" and bot.reconnects == 0
        assert await running.server.participants("r1") == []


async def test_a_token_refused_on_reconnect_ends_the_bot(running):
    async with Bot.connect(running.url, running.token("r1", "bot", ttl=1), backoff=(0.1, 0.5)) as bot:
        await asyncio.sleep(2.1)  # the token expires: the live connection stays, a new one is refused
        sid = next(s for s, c in running.server.sockets.connections.items() if c.identity == "bot")
        await running.server.sio.disconnect(sid)
        async with asyncio.timeout(10):
            await bot.closed.wait()
        assert bot.error is not None and bot.error.code == "unauthorized" and bot.reconnects == 0
        assert running.server.sockets.connections == {}


async def test_a_server_embedded_under_a_prefix(make_server):
    server = await make_server(prefix="/rtc", dev=True)
    token, identity = await dev_token(server.base, "r1", "Prefixed")
    async with Bot.connect(server.base, token) as bot:
        assert bot.identity == identity
        assert [p["identity"] for p in await server.server.participants("r1")] == [identity]


@pytest.mark.parametrize("urls", [[], "localhost:8080", ["http://127.0.0.1:9", "ftp://host"]])
def test_a_bot_refuses_a_server_url_that_is_not_one_before_connecting(urls):
    with pytest.raises(BotError) as refused:
        Bot.connect(urls, "a-token")
    assert refused.value.code == "bad_request"


async def test_a_bot_given_several_urls_joins_through_the_one_it_can_reach(running):
    async with Bot.connect(["http://127.0.0.1:9", running.url], running.token("r1", "bot-1")) as bot:
        assert bot.url == running.url and bot.room == "r1"
        assert [p["identity"] for p in await running.server.participants("r1")] == ["bot-1"]
    with pytest.raises(BotError) as unreachable:  # none of them: the last one's error
        await Bot.connect(["http://127.0.0.1:9", "http://127.0.0.1:7"], running.token("r1", "bot-1"))
    assert unreachable.value.code == "unreachable" and "127.0.0.1:7" in unreachable.value.message
