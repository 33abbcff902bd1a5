"""`?relay=1`: the page sends and receives media only through the TURN server of its join ack."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from roomwire.signaling import TurnCredentials

from tests.conftest import free_port
from tests.turn_server import running_turnserver
from tests.web.conftest import MakeWebServer, join, wait_remote_video

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(90)]

TURN_SECRET = "web-turn-secret-0123456789abcdef"
# The page's peer connections, for getStats (the client keeps them to itself).
KEEP_PEER_CONNECTIONS = """
window.peerConnections = [];
const Native = window.RTCPeerConnection;
window.RTCPeerConnection = function (...args) {
  const pc = new Native(...args);
  window.peerConnections.push(pc);
  return pc;
};
window.RTCPeerConnection.prototype = Native.prototype;
"""
# The local candidate of the pair each open peer connection sends and receives on.
MEDIA_PATHS = """async () => {
  const paths = [];
  for (const pc of window.peerConnections.filter((pc) => pc.connectionState === 'connected')) {
    const stats = [...(await pc.getStats()).values()];
    const transport = stats.find((s) => s.type === 'transport');
    const pair = stats.find((s) => s.id === transport.selectedCandidatePairId);
    const local = stats.find((s) => s.id === pair.localCandidateId);
    paths.push({ type: local.candidateType, address: local.address, port: local.port });
  }
  return paths;
}"""


async def test_relay_only_pages_get_media_through_coturn(
    make_web_server: MakeWebServer, new_page: Any, tmp_path: Path
) -> None:
    port = free_port()
    relay_ports = (port + 1, port + 20)
    with running_turnserver(TURN_SECRET, tmp_path, port=port, relay_ports=relay_ports) as turn:
        running = await make_web_server(turn=TurnCredentials([turn.url], TURN_SECRET, ttl=300))
        ada, grace = await new_page(KEEP_PEER_CONNECTIONS), await new_page(KEEP_PEER_CONNECTIONS)
        await join(ada, f"{running.base}/r/relayed?relay=1", "Ada")
        await join(grace, f"{running.base}/r/relayed?relay=1", "Grace")
        await wait_remote_video(grace, "ada")
        await wait_remote_video(ada, "grace")
        for page in (ada, grace):
            paths = await page.evaluate(MEDIA_PATHS)
            assert len(paths) == 2, paths  # publisher and subscriber
            for path in paths:
                assert path["type"] == "relay" and path["address"] == "127.0.0.1", paths
                assert relay_ports[0] <= path["port"] <= relay_ports[1], paths
        allocated = re.findall(r"user <\d+:(\w+)-\w+>: incoming packet ALLOCATE processed, success", turn.log())
        assert {"ada", "grace"} <= set(allocated)


async def test_relay_only_without_a_turn_server_says_so(make_web_server: MakeWebServer, new_page: Any) -> None:
    running = await make_web_server()
    page = await new_page()
    await join(page, f"{running.base}/r/norelay?relay=1", "Ada")
    notice = page.locator("#notice")
    await notice.wait_for()
    assert "hands out no TURN server" in await notice.text_content()
