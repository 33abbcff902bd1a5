"""`roomwire bot` as a user runs it: a subprocess against a server started by the test."""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict

import av
import pytest
from roomwire.media.sfu import SFU

from tests.conftest import REPO

pytestmark = pytest.mark.timeout(120)

ROOMWIRE = str(REPO / ".venv" / "bin" / "roomwire")


async def start_cli(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        ROOMWIRE, "bot", *args, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )


async def finished(process: asyncio.subprocess.Process, timeout: float = 60) -> tuple[int, str, str]:
    async with asyncio.timeout(timeout):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def read_until(process: asyncio.subprocess.Process, pattern: str, timeout: float = 30) -> str:
    """Read the process's output until a line matches `pattern`; returns what was read."""
    assert process.stdout is not None
    seen = ""
    async with asyncio.timeout(timeout):
        while line := (await process.stdout.readline()).decode():
            seen += line
            if re.search(pattern, line):
                return seen
    raise AssertionError(f"no line matched {pattern!r} in:\n{seen}")


async def run_cli(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    return await finished(await start_cli(*args), timeout)


async def test_failures_exit_non_zero_with_a_clear_message(make_server, tmp_path):
    plain = await make_server()
    code, _, err = await run_cli("--url", "http://127.0.0.1:9", "--room", "r", "--dev")
    assert code == 1 and "cannot reach http://127.0.0.1:9" in err

    code, _, err = await run_cli("--url", "http://127.0.0.1:9", "--room", "r", "--token", "t")
    assert code == 1 and "cannot reach http://127.0.0.1:9" in err

    code, _, err = await run_cli("--url", plain.url, "--room", "r", "--dev", "--pattern", "--size", "99x40")
    assert code == 2 and "at least 128x40" in err

    code, _, err = await run_cli("--url", plain.url, "--room", "r", "--token", "not-a-token")
    assert code == 1 and "refused the token (unauthorized)" in err

    code, _, err = await run_cli("--url", plain.url, "--room", "r", "--dev")
    assert code == 1 and "--dev" in err  # this server does not mint dev tokens

    token = plain.token("other", "bot")
    code, _, err = await run_cli("--url", plain.url, "--room", "r", "--token", token)
    assert code == 1 and "the token is for room 'other'" in err

    code, _, err = await run_cli("--url", plain.url, "--room", "r", "--token", plain.token("r", "b"), "--pattern")
    assert code == 1 and "relays no media" in err

    missing = str(tmp_path / "nope.webm")
    code, _, err = await run_cli("--url", plain.url, "--room", "r", "--token", "t", "--play", missing)
    assert code == 1 and "nope.webm" in err

    code, _, err = await run_cli("--url", plain.url, "--room", "r", "--token", "t", "--count", "2")
    assert code == 2 and "--count > 1 needs --dev" in err
    assert await plain.server.participants("r") == []


async def test_count_ten_bots_each_see_the_others(make_server):
    server = await make_server(dev=True)
    process = await start_cli("--url", server.url, "--room", "load", "--dev", "--count", "10", "--duration", "30")
    for _ in range(300):
        participants = await server.server.participants("load")
        if len(participants) == 10:
            break
        await asyncio.sleep(0.1)
    assert len(participants) == 10 and {p["transport"] for p in participants} == {"bot"}
    # let the last presence events reach everyone, then stop the run early
    await asyncio.sleep(1.0)
    process.terminate()  # SIGTERM ends a run cleanly, like --duration
    code, out, err = await finished(process)
    assert code == 0 and out.count(": left\n") == 10, out + err
    seen: dict[str, int] = defaultdict(int)
    for label, count in re.findall(r"^(\S+): .*?(\d+) others? here", out, re.MULTILINE):
        seen[label] = max(seen[label], int(count))
    assert len(seen) == 10 and set(seen.values()) == {9}, out + err


async def test_pattern_bot_and_recorder_bot(make_server, tmp_path):
    server = await make_server(media=SFU(ice_servers=[]), dev=True)
    pattern = await start_cli(
        "--url",
        server.url,
        "--room",
        "m",
        "--dev",
        "--name",
        "pattern",
        "--pattern",
        "--size",
        "320x240",
        "--duration",
        "30",
        "--stats",
        "1",
    )
    for _ in range(300):
        if len(server.server.media.tracks("m")) == 2:
            break
        await asyncio.sleep(0.1)
    assert {t.kind for t in server.server.media.tracks("m")} == {"audio", "video"}
    code, out, err = await run_cli(
        "--url",
        server.url,
        "--room",
        "m",
        "--dev",
        "--name",
        "rec",
        "--record",
        str(tmp_path),
        "--duration",
        "3",
        "--stats",
        "1",
    )
    pattern.terminate()
    _, pattern_out, _ = await finished(pattern)
    assert code == 0, out + err
    assert re.search(r"track pattern-\w+/video \(camera", out)
    assert re.search(r"pattern-\w+/video \d+\.\d frames/s", out)
    files = list(tmp_path.glob("pattern-*.webm"))
    assert len(files) == 1 and f"recorded {files[0]}" in out
    with av.open(str(files[0])) as container:
        video = sum(1 for _ in container.decode(video=0))
    with av.open(str(files[0])) as container:
        audio = sum(1 for _ in container.decode(audio=0))
    assert video >= 60 and audio >= 50, (video, audio)
    assert "publishing a 320x240 test pattern at 30 fps and a tone" in pattern_out


async def test_play_a_file_and_publish_silence(make_server, tmp_path):
    from tests.media.test_bot_file_source import write_clip

    server = await make_server(media=SFU(ice_servers=[]), dev=True)
    clip = write_clip(tmp_path / "clip.webm", seconds=1.0)
    player = await start_cli("--url", server.url, "--room", "m", "--dev", "--name", "player", "--play", str(clip))
    quiet = await start_cli("--url", server.url, "--room", "m", "--dev", "--name", "quiet", "--silence")
    for _ in range(300):
        if len(server.server.media.tracks("m")) == 3:
            break
        await asyncio.sleep(0.1)
    published = {(t.identity.split("-")[0], t.kind, t.mime_type) for t in server.server.media.tracks("m")}
    assert published == {
        ("player", "video", "video/vp8"),
        ("player", "audio", "audio/opus"),
        ("quiet", "audio", "audio/opus"),
    }
    # each sees the other's tracks
    player_seen = await read_until(player, r"track quiet-\w+/audio \(microphone")
    quiet_seen = await read_until(quiet, r"track player-\w+/video \(camera")
    for process in (player, quiet):
        process.terminate()
    (player_code, player_out, _), (quiet_code, quiet_out, _) = [await finished(p) for p in (player, quiet)]
    assert player_code == quiet_code == 0
    assert "video (passthrough video/VP8), audio (passthrough audio/opus)" in player_seen + player_out
    assert "publishing silence" in quiet_seen + quiet_out


async def test_a_cut_cli_bot_reconnects_and_publishes_again(make_server):
    server = await make_server(media=SFU(ice_servers=[]), dev=True)
    bot = await start_cli("--url", server.url, "--room", "m", "--dev", "--pattern", "--size", "160x120", "--fps", "15")
    try:
        await read_until(bot, r"publishing a 160x120 test pattern")
        for _ in range(100):
            if len(server.server.media.tracks("m")) == 2:
                break
            await asyncio.sleep(0.1)
        before = {t.sid for t in server.server.media.tracks("m")}
        assert len(before) == 2
        sid = next(iter(server.server.sockets.connections))
        await server.server.sio.disconnect(sid)
        seen = await read_until(bot, r"reconnected to \S+ \(#1\)")
        assert f"lost the connection to {server.url}; reconnecting" in seen
        assert f"reconnected to {server.url} (#1)" in seen
        for _ in range(100):
            after = {t.sid for t in server.server.media.tracks("m")}
            if len(after) == 2 and not after & before:
                break
            await asyncio.sleep(0.1)
        assert len(after) == 2 and not after & before
    finally:
        bot.terminate()
        code, _, err = await finished(bot)
    assert code == 0, err


async def test_a_bot_given_several_urls_joins_through_the_first_it_reaches(make_server):
    server = await make_server(dev=True)
    code, out, err = await run_cli(
        "--url", "http://127.0.0.1:9", "--url", server.url, "--room", "r", "--dev", "--duration", "1"
    )
    assert code == 0, out + err
    assert "cannot reach http://127.0.0.1:9" in out and "trying the next URL" in out, out
    assert re.search(r"^bot-\S+: joined room r as ", out, re.MULTILINE), out


async def test_a_server_url_that_is_not_one_is_a_usage_error():
    code, _, err = await run_cli("--url", "http://127.0.0.1:9", "--url", "localhost:8080", "--room", "r", "--dev")
    assert code == 2 and "'localhost:8080' is not an http(s):// URL, e.g. http://localhost:8080" in err
