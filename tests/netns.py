"""Two network namespaces joined by one veth pair, made by a test and removed after it.

The addresses (10.201.0.0/30) exist only inside these two namespaces: nothing is added to the
host's own network, and no packet leaves the pair. Needs root, `ip` and `nft`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tests.conftest import require_part

SERVER_IP = "10.201.0.1"
CLIENT_IP = "10.201.0.2"
PREFIX = "rwt-"  # rwt-<pid of the test run>-srv / -cli


def require_netns() -> None:
    require_part(os.geteuid() == 0, "root (network namespaces)", "run the tests as root, as CI does")
    require_part(shutil.which("ip") is not None, "ip (iproute2)", "apt-get install -y iproute2")
    require_part(shutil.which("nft") is not None, "nft", "apt-get install -y nftables")


def sh(*command: str, stdin: str | None = None) -> None:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()}")


@dataclass(frozen=True)
class NamespacePair:
    server: str
    client: str

    @staticmethod
    def run_in(namespace: str) -> tuple[str, ...]:
        """The prefix that runs a command inside `namespace`."""
        return ("ip", "netns", "exec", namespace)

    def firewall_client(self, tcp_ports: Iterable[int], udp_ports: Iterable[int]) -> None:
        """The client may open only these ports of the server side, and hears only the answers."""
        tcp = ", ".join(map(str, tcp_ports))
        udp = ", ".join(map(str, udp_ports))
        ruleset = f"""
table inet roomwire_test {{
  chain output {{
    type filter hook output priority 0; policy drop;
    oifname "lo" accept
    ip daddr {SERVER_IP} tcp dport {{ {tcp} }} accept
    ip daddr {SERVER_IP} udp dport {{ {udp} }} accept
  }}
  chain input {{
    type filter hook input priority 0; policy drop;
    iifname "lo" accept
    ct state established,related accept
  }}
}}
"""
        sh(*self.run_in(self.client), "nft", "-f", "-", stdin=ruleset)


def remove_stale() -> None:
    """Namespaces of test runs that died before their teardown."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    for name in re.findall(rf"^({PREFIX}(\d+)-\w+)", listed, re.MULTILINE):
        namespace, pid = name
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)


@contextmanager
def namespace_pair() -> Iterator[NamespacePair]:
    """`server` (SERVER_IP) and `client` (CLIENT_IP), linked directly; both deleted at the end."""
    require_netns()
    remove_stale()
    tag = f"{PREFIX}{os.getpid()}"
    pair = NamespacePair(f"{tag}-srv", f"{tag}-cli")
    server_end, client_end = f"rwt{os.getpid()}s", f"rwt{os.getpid()}c"
    try:
        for namespace in (pair.server, pair.client):
            sh("ip", "netns", "add", namespace)
            sh("ip", "-n", namespace, "link", "set", "lo", "up")
        sh("ip", "link", "add", server_end, "netns", pair.server, "type", "veth",
           "peer", client_end, "netns", pair.client)  # fmt: skip
        for namespace, device, address in ((pair.server, server_end, SERVER_IP), (pair.client, client_end, CLIENT_IP)):
            sh("ip", "-n", namespace, "addr", "add", f"{address}/30", "dev", device)
            sh("ip", "-n", namespace, "link", "set", device, "up")
        yield pair
    finally:  # deleting a namespace deletes its end of the veth pair, and so the pair
        for namespace in (pair.server, pair.client):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
