"""The examples/ bots, each run as a subprocess the way a user runs it."""

from __future__ import annotations

import asyncio
import uuid

import av
import pytest
from roomwire.media.bot import Bot
from roomwire.media.sfu import SFU
from roomwire.media.sources import PatternVideoTrack, ToneAudioTrack

from tests.conftest import REPO
from tests.media.sfu_peer import SfuPeer, wait_until
from tests.sio_client import joined_client

pytestmark = pytest.mark.timeout(120)

PYTHON = str(REPO / ".venv" / "bin" / "python")


async def start_example(name: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        PYTHON,
        str(REPO / "examples" / name),
        *args,
        cwd="/",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_line(process: asyncio.subprocess.Process, text: str, timeout: float = 30) -> str:
    assert process.stdout is not None
    async with asyncio.timeout(timeout):
        while line := (await process.stdout.readline()).decode():
            if text in line:
                return line
    raise AssertionError(f"the example ended without printing {text!r}: {await process.stderr.read()!r}")


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
    await asyncio.wait_for(process.wait(), 15)


@pytest.fixture
async def dev_sfu(make_server):
    return await make_server(media=SFU(ice_servers=[]), dev=True)


async def test_echo_bot_example_returns_a_persons_video(dev_sfu):
    process = await start_example("echo_bot.py", dev_sfu.url, "echo-room", "60")
    person = SfuPeer("person")
    try:
        await wait_line(process, "echo bot in echo-room")
        await person.join(dev_sfu.url, dev_sfu.token("echo-room", "person"))
        await person.subscribe()
        assert (await person.publish([PatternVideoTrack(320, 240, 15)]))["ok"]

        def echoed_counters() -> int:
            if not person.track_maps:
                return 0
            mids = {t["mid"] for t in person.track_maps[-1] if t["identity"].startswith("echo-")}
            return max((len(r.counters) for mid, r in person.received.items() if mid in mids), default=0)

        await wait_until(lambda: echoed_counters() >= 10, timeout=30)  # our own pattern, back from the bot
    finally:
        await person.close()
        await stop(process)


async def test_recorder_bot_example_writes_a_playable_file(dev_sfu, tmp_path):
    async with Bot.connect(dev_sfu.url, dev_sfu.token("rec-room", "pattern")) as pattern:
        await pattern.publish(PatternVideoTrack(320, 240, 30), ToneAudioTrack())
        process = await start_example("recorder_bot.py", dev_sfu.url, "rec-room", str(tmp_path), "4")
        line = await wait_line(process, "wrote ")
        assert (await asyncio.wait_for(process.wait(), 15)) == 0
    path = tmp_path / "pattern.webm"
    assert line.strip() == f"wrote {path}"
    with av.open(str(path)) as container:
        assert sum(1 for _ in container.decode(video=0)) >= 30


async def test_chat_bot_example_answers(dev_sfu):
    process = await start_example("chat_bot.py", dev_sfu.url, "chat-room", "60")
    try:
        await wait_line(process, "chat bot in chat-room")
        alice, _ = await joined_client(dev_sfu.url, dev_sfu.token("chat-room", "alice", name="Alice"))
        message = {"type": "chat", "id": uuid.uuid4().hex, "text": "hello bot"}
        await alice.call("message", {"data": message})
        await alice.call("message", {"data": message})  # the same message twice: one answer
        reply = await alice.wait_for("message", timeout=15)
        assert reply["from"].startswith("chat-bot-")
        assert reply["data"]["type"] == "chat" and reply["data"]["text"] == "Alice said: hello bot"
        await asyncio.sleep(0.5)
        assert len(alice.events["message"]) == 1
        await alice.close()
    finally:
        await stop(process)
