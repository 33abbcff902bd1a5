"""TURN REST credentials: the format coturn's `use-auth-secret` checks, in every join ack."""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import subprocess
import time

import pytest
from aioice import stun, turn
from roomwire.signaling import TurnCredentials
from roomwire.signaling.server import ServeConfig, build_app

from tests.conftest import SECRET, free_port, require_part
from tests.sio_client import joined_client
from tests.turn_server import running_turnserver

TURN_SECRET = "shared-with-coturn-0123456789abcdef"
URLS = ["turn:turn.example:3478?transport=udp", "turns:turn.example:5349?transport=tcp"]


def openssl_credential(secret: str, username: str) -> str:
    """base64(HMAC-SHA1(secret, username)), computed by OpenSSL rather than by Python."""
    require_part(shutil.which("openssl") is not None, "openssl", "apt-get install -y openssl")
    digest = subprocess.run(
        ["openssl", "dgst", "-sha1", "-hmac", secret, "-binary"],
        input=username.encode(),
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    return base64.b64encode(digest).decode()


def test_credentials_are_the_expiry_the_identity_and_their_hmac():
    entry = TurnCredentials(URLS, TURN_SECRET, ttl=600).ice_server("alice", now=1_767_225_600.7)
    assert entry == {
        "urls": URLS,
        "username": "1767226200:alice",
        "credential": openssl_credential(TURN_SECRET, "1767226200:alice"),
    }
    other = TurnCredentials(URLS[0], TURN_SECRET).ice_server("bob:with:colons", now=1_000)
    assert other["urls"] == URLS[:1] and other["username"] == "4600:bob:with:colons"
    assert other["credential"] == openssl_credential(TURN_SECRET, "4600:bob:with:colons")


@pytest.mark.parametrize(
    ("urls", "secret", "ttl", "message"),
    [
        ([], TURN_SECRET, 3600, "at least one turn: or turns: URL"),
        (["stun:turn.example:3478"], TURN_SECRET, 3600, "is not a TURN URL"),
        (URLS, "", 3600, "static-auth-secret"),
        (URLS, TURN_SECRET, 0, "must be 1..86400 seconds (24 h), not 0"),
        (URLS, TURN_SECRET, 86_401, "must be 1..86400 seconds (24 h), not 86401"),
    ],
)
def test_bad_settings_are_refused_with_what_to_do(urls, secret, ttl, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TurnCredentials(urls, secret, ttl)


def test_the_secret_stays_out_of_the_representation():
    assert TURN_SECRET not in repr(TurnCredentials(URLS, TURN_SECRET)) + str(TurnCredentials(URLS, TURN_SECRET))


async def allocate(port: int, entry: dict[str, str]) -> str | None:
    """Ask coturn for a relay with these credentials; None when granted, else its refusal."""
    try:
        transport, _ = await turn.create_turn_endpoint(
            asyncio.DatagramProtocol, server_addr=("127.0.0.1", port),
            username=entry["username"], password=entry["credential"],
        )  # fmt: skip
    except stun.TransactionFailed as exc:
        return str(exc)
    transport.close()
    return None


async def test_coturn_accepts_them_until_they_expire(tmp_path):
    port = free_port()
    with running_turnserver(TURN_SECRET, tmp_path, port=port, relay_ports=(port + 1, port + 4)):
        minted = TurnCredentials([f"turn:127.0.0.1:{port}"], TURN_SECRET, ttl=60)
        assert await allocate(port, minted.ice_server("alice")) is None
        expired = minted.ice_server("alice", now=time.time() - 120)
        assert "401" in (await allocate(port, expired) or "")
        wrong = TurnCredentials([f"turn:127.0.0.1:{port}"], "another secret").ice_server("alice")
        assert "401" in (await allocate(port, wrong) or "")


async def test_each_join_ack_holds_fresh_credentials_for_the_joiner_beside_the_static_servers(make_server):
    static = [{"urls": "stun:stun.example:3478"}]
    server = await make_server(ice_servers=static, turn=TurnCredentials(URLS, TURN_SECRET, ttl=120))
    alice, ack = await joined_client(server.url, server.token("r", "alice"))
    first = ack["iceServers"]
    assert first[0] == static[0] and len(first) == 2
    assert first[1]["urls"] == URLS
    expiry, identity = first[1]["username"].split(":", 1)
    assert identity == "alice" and abs(int(expiry) - (time.time() + 120)) < 5
    assert first[1]["credential"] == openssl_credential(TURN_SECRET, first[1]["username"])

    await alice.close()
    await asyncio.sleep(1.1)  # the expiry has a resolution of one second
    again, ack = await joined_client(server.url, server.token("r", "alice"))
    assert int(ack["iceServers"][1]["username"].split(":")[0]) > int(expiry)
    bob, bob_ack = await joined_client(server.url, server.token("r", "bob"))
    assert bob_ack["iceServers"][1]["username"].endswith(":bob")
    await again.close()
    await bob.close()


def test_roomwire_serve_gives_turn_to_clients_only_and_the_sfu_the_static_servers():
    static = [{"urls": "stun:stun.example:3478"}]
    turn = TurnCredentials(URLS, TURN_SECRET)
    _, server = build_app(ServeConfig(secret=SECRET, ice_servers=static, turn=turn, media="sfu"))
    assert server.media is not None and server.media.ice_servers == static
