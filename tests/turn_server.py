"""A real coturn (`turnserver`, Debian's coturn package) with the TURN REST scheme
(`use-auth-secret` + `static-auth-secret`), started and stopped by the tests that need it."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require_part

REALM = "roomwire"
# "session 0010...: peer usage: realm=<roomwire>, username=<1767225600:alice>, rp=1091, rb=722071, sp=57, sb=3826"
PEER_USAGE = re.compile(r"peer usage: realm=<[^>]*>, username=<\d+:(?P<identity>[^>]*)>, rp=\d+, rb=(?P<rb>\d+)")


def require_turnserver() -> str:
    path = shutil.which("turnserver")
    require_part(path is not None, "coturn (turnserver)", "apt-get install -y coturn")
    assert path is not None
    return path


@dataclass
class TurnServer:
    address: str
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"turn:{self.address}:{self.port}?transport=udp"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def bytes_relayed_to(self, identity: str) -> int:
        """Bytes the TURN server relayed from peers to `identity`'s allocations that have ended."""
        return sum(int(m["rb"]) for m in PEER_USAGE.finditer(self.log()) if m["identity"] == identity)


@contextmanager
def running_turnserver(
    secret: str,
    log_dir: Path,
    *,
    address: str = "127.0.0.1",
    port: int = 3478,
    relay_ports: tuple[int, int] = (49160, 49200),
    prefix: tuple[str, ...] = (),
    allow_loopback_peers: bool = False,
) -> Iterator[TurnServer]:
    """coturn on `address:port` (UDP and TCP), relaying from the same address.

    `prefix` runs it through another command (`ip netns exec NS`). It reads no configuration
    file (`-n`), so a coturn that Debian's package may have set up is not involved.
    """
    binary = require_turnserver()
    server = TurnServer(address, port, log_dir / f"turnserver-{address}-{port}.log")
    command = [
        *prefix, binary, "-n", "-v",
        f"--listening-ip={address}", f"--listening-port={port}", f"--relay-ip={address}",
        f"--min-port={relay_ports[0]}", f"--max-port={relay_ports[1]}",
        "--use-auth-secret", f"--static-auth-secret={secret}", f"--realm={REALM}",
        "--fingerprint", "--no-tls", "--no-dtls", "--no-cli",
        "--log-file=stdout", "--simple-log",
        f"--pidfile={log_dir / f'turnserver-{port}.pid'}", f"--userdb={log_dir / f'turndb-{port}'}",
    ]  # fmt: skip
    if allow_loopback_peers:
        command.append("--allow-loopback-peers")
    with server.log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while f"UDP listener opened on: {address}:{port}" not in server.log():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"turnserver did not start:\n{server.log()}")
            time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
