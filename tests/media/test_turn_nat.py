"""Media through a firewall, for real: a bot whose only way to the SFU's UDP ports is coturn.

Two network namespaces: `server` runs `roomwire serve` (configured by ROOMWIRE_* variables, TURN
included), coturn and a pattern bot; `client` runs a recording bot whose firewall lets it open
the signaling port and coturn's port 3478, nothing else. Its ICE pairs with the SFU's host
candidates are dropped, so every frame it records came through a relay coturn allocated with
the credentials of its join ack. A server that signs with another secret than coturn's gets
its client nothing but an error that says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import pytest
from roomwire.signaling import TokenIssuer

from tests.conftest import SECRET
from tests.media.sfu_peer import wait_until
from tests.netns import SERVER_IP, NamespacePair, namespace_pair
from tests.turn_server import TurnServer, running_turnserver

pytestmark = pytest.mark.timeout(150)

TURN_SECRET = "turn-secret-shared-with-coturn-0123456789"
TURN_PORT = 3478
GOOD_PORT, WRONG_PORT = 8080, 8081  # inside the server namespace: nothing else listens there
ROOMWIRE = (sys.executable, "-m", "roomwire.signaling.cli")


@dataclass
class Lab:
    pair: NamespacePair
    turn: TurnServer


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    logs = tmp_path_factory.mktemp("turn")
    with namespace_pair() as pair:
        pair.firewall_client(tcp_ports=(GOOD_PORT, WRONG_PORT, TURN_PORT), udp_ports=(TURN_PORT,))
        with running_turnserver(
            TURN_SECRET, logs, address=SERVER_IP, port=TURN_PORT, prefix=pair.run_in(pair.server)
        ) as turn:
            yield Lab(pair, turn)


@dataclass
class Spawned:
    """A process run in a namespace; its output goes to a file (a full pipe would stall it)."""

    process: asyncio.subprocess.Process
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_for_output(self, text: str, timeout: float = 30) -> None:
        def printed() -> bool:
            assert self.process.returncode is None, f"it exited before printing {text!r}:\n{self.output()}"
            return text in self.output()

        await wait_until(printed, timeout)

    async def exit_code(self, timeout: float) -> int:
        async with asyncio.timeout(timeout):
            return await self.process.wait()


Spawn = Callable[..., Awaitable[Spawned]]


@pytest.fixture
async def spawn(tmp_path: Path) -> AsyncIterator[Spawn]:
    """`await spawn(name, namespace, *roomwire args, env=...)`; all stopped at teardown."""
    spawned: list[Spawned] = []

    async def start(name: str, namespace: str, *args: str, env: dict[str, str] | None = None) -> Spawned:
        log_path = tmp_path / f"{name}.log"
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                *NamespacePair.run_in(namespace), *ROOMWIRE, *args,
                stdout=log, stderr=asyncio.subprocess.STDOUT, env={**os.environ, **(env or {})},
            )  # fmt: skip
        spawned.append(Spawned(process, log_path))
        return spawned[-1]

    yield start
    for item in reversed(spawned):
        if item.process.returncode is None:
            item.process.terminate()
            try:
                await item.exit_code(timeout=10)
            except TimeoutError:
                item.process.kill()
                await item.process.wait()


async def serve_room(lab: Lab, spawn: Spawn, port: int, turn_secret: str) -> tuple[Spawned, str]:
    """`roomwire serve` in the server namespace, as the image runs it, and a pattern bot there."""
    server = await spawn(f"serve-{port}", lab.pair.server, "serve", env={
        "ROOMWIRE_SECRET": SECRET,
        "ROOMWIRE_HOST": SERVER_IP,
        "ROOMWIRE_PORT": str(port),
        "ROOMWIRE_TURN_URLS": lab.turn.url,
        "ROOMWIRE_TURN_SECRET": turn_secret,
        "ROOMWIRE_LOG_LEVEL": "debug",
    })  # fmt: skip
    await server.wait_for_output("serving on")
    url = f"http://{SERVER_IP}:{port}"
    pattern = await spawn(
        f"pattern-{port}", lab.pair.server, "bot", "--url", url, "--room", "nat", "--token", token("pattern"),
        "--pattern", "--size", "320x240", "--fps", "15", "--stats", "0",
    )  # fmt: skip
    await pattern.wait_for_output("publishing")
    return server, url


def token(identity: str) -> str:
    return TokenIssuer(SECRET).mint(identity=identity, room="nat")


async def record_behind_the_firewall(lab: Lab, spawn: Spawn, url: str, identity: str, folder: Path) -> Spawned:
    """`roomwire bot --record` in the client namespace for a few seconds; returns it exited."""
    recorder = await spawn(
        "recorder", lab.pair.client, "bot", "--url", url, "--room", "nat", "--token", token(identity),
        "--record", str(folder), "--duration", "7", "--stats", "0",
    )  # fmt: skip
    await recorder.exit_code(timeout=60)
    return recorder


def video_frames(recording: Path) -> list[tuple[int, int]]:
    """The size of every video frame that decodes."""
    with av.open(str(recording)) as container:
        return [(frame.width, frame.height) for frame in container.decode(video=0)]


async def test_a_client_behind_a_firewall_records_media_relayed_by_coturn(lab, spawn, tmp_path):
    server, url = await serve_room(lab, spawn, GOOD_PORT, TURN_SECRET)
    recordings = tmp_path / "recordings"
    recorder = await record_behind_the_firewall(lab, spawn, url, "behind-nat", recordings)
    assert recorder.process.returncode == 0, recorder.output()
    assert "no relay candidate" not in recorder.output()

    frames = video_frames(recordings / "pattern.webm")
    assert len(frames) >= 40, f"{len(frames)} frames in 7 s of a 15 fps pattern"
    assert set(frames) == {(320, 240)}
    # coturn reports an allocation's traffic when it ends: the recording came through it
    with contextlib.suppress(TimeoutError):
        await wait_until(lambda: lab.turn.bytes_relayed_to("behind-nat") >= 100_000, timeout=15)
    relayed = lab.turn.bytes_relayed_to("behind-nat")
    assert relayed >= 100_000, f"coturn relayed {relayed} bytes to the client: its media took another path"
    assert TURN_SECRET not in server.output() + recorder.output()


async def test_a_wrong_turn_secret_gets_no_media_and_a_clear_error(lab, spawn, tmp_path):
    server, url = await serve_room(lab, spawn, WRONG_PORT, "not-the-secret-coturn-has")
    recordings = tmp_path / "recordings"
    recorder = await record_behind_the_firewall(lab, spawn, url, "wrong-secret", recordings)
    assert recorder.process.returncode == 1, recorder.output()
    output = recorder.output()
    assert f"the TURN server ({lab.turn.url}) gave no relay candidate" in output
    assert "static-auth-secret" in output and "recorded nothing: no media arrived" in output
    assert not list(recordings.glob("*"))
    assert re.search(r"user <\d+:wrong-secret>: incoming packet message processed, error 401", lab.turn.log())
    assert "not-the-secret-coturn-has" not in server.output()
