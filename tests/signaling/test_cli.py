"""The `roomwire` command as a user runs it: a real subprocess."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import time

from roomwire.signaling import TokenIssuer
from roomwire.signaling.cli import GC_YOUNG_THRESHOLD, tune_gc

from tests.conftest import SECRET, free_port
from tests.media.test_bot_cli import read_until
from tests.sio_client import joined_client

ROOMWIRE = [sys.executable, "-m", "roomwire.signaling.cli"]


def clean_environment(secret: str | None) -> dict[str, str]:
    """This environment without ROOMWIRE_* settings (the test run's own switches stay)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMWIRE_") or k == "ROOMWIRE_REQUIRE_ALL"}
    if secret is not None:
        env["ROOMWIRE_SECRET"] = secret
    return env


def run(
    *args: str, secret: str | None = SECRET, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    env = {**clean_environment(secret), **(env or {})}
    return subprocess.run([*ROOMWIRE, *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_serve_freezes_its_startup_objects_and_collects_young_ones_less_often():
    threshold = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *threshold[1:])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_a_signaling_command_loads_no_media_library():
    # every `roomwire` command loads the `bot` command's entry point; aiortc and PyAV (~50 MiB)
    # are loaded only by the command that runs bots (and by `serve --media sfu`)
    probe = (
        "import sys; from roomwire.signaling.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('aiortc', 'av', 'roomwire.media.bot.client') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=clean_environment(None))
    assert loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr


def test_token_mints_a_verifiable_token():
    result = run("token", "--room", "demo", "--identity", "ann", "--name", "Ann", "--ttl", "60")
    assert result.returncode == 0, result.stderr
    claims = TokenIssuer(SECRET).verify(result.stdout.strip())
    assert (claims.room, claims.identity, claims.name, claims.grants.admin) == ("demo", "ann", "Ann", False)
    admin = run("token", "--identity", "ops", "--admin")
    assert admin.returncode == 0 and TokenIssuer(SECRET).verify(admin.stdout.strip()).grants.admin


def test_token_errors_say_what_to_do():
    no_room = run("token", "--identity", "ann")
    assert no_room.returncode == 2 and "--room is required" in no_room.stderr
    bad_room = run("token", "--room", "a b", "--identity", "ann")
    assert bad_room.returncode == 2 and "room must match" in bad_room.stderr
    no_secret = run("token", "--room", "r", "--identity", "ann", secret=None)
    assert no_secret.returncode == 2 and "ROOMWIRE_SECRET" in no_secret.stderr


def test_serve_without_dev_or_secret_refuses_with_instructions():
    result = run("serve", "--port", "0", secret=None)
    assert result.returncode == 2
    assert "no secret" in result.stderr and "export ROOMWIRE_SECRET" in result.stderr and "--dev" in result.stderr


def test_serve_refuses_a_short_secret():
    result = run("serve", "--port", "0", "--media", "none", secret="short")
    assert result.returncode == 2 and "at least 32 bytes" in result.stderr


def test_serve_refuses_malformed_ice_servers():
    not_json = run("serve", "--port", "0", "--media", "none", "--ice-servers", "[{urls")
    assert not_json.returncode != 0 and "--ice-servers must be JSON" in not_json.stderr
    no_urls = run("serve", "--port", "0", "--media", "none", "--ice-servers", '[{"username": "u"}]')
    assert no_urls.returncode != 0 and "list of {urls" in no_urls.stderr


def test_serve_refuses_bad_turn_settings_with_what_to_do():
    no_secret = run("serve", "--port", "0", "--media", "none", "--turn-url", "turn:turn.example:3478")
    assert no_secret.returncode == 2 and "set ROOMWIRE_TURN_SECRET (or pass --turn-secret)" in no_secret.stderr
    no_url = run("serve", "--port", "0", "--media", "none", "--turn-secret", "s3cret")
    assert no_url.returncode == 2 and "add --turn-url turn:HOST:3478?transport=udp" in no_url.stderr
    turn = ("--turn-url", "turn:turn.example:3478", "--turn-secret", "s3cret")
    too_long = run("serve", "--port", "0", "--media", "none", *turn, "--turn-ttl", "90000")
    assert too_long.returncode == 2 and "must be 1..86400 seconds (24 h), not 90000" in too_long.stderr
    not_turn = run("serve", "--port", "0", "--media", "none", "--turn-url", "stun:x:3478", "--turn-secret", "s")
    assert not_turn.returncode == 2 and "'stun:x:3478' is not a TURN URL" in not_turn.stderr
    assert "s3cret" not in too_long.stderr + no_url.stderr


def test_serve_refuses_bad_environment_values():
    port = run("serve", "--media", "none", env={"ROOMWIRE_PORT": "eighty"})
    assert port.returncode == 2 and "'eighty' is not a port number 0..65535 (--port, ROOMWIRE_PORT)" in port.stderr
    level = run("serve", "--media", "none", env={"ROOMWIRE_LOG_LEVEL": "loud"})
    assert level.returncode == 2 and "'loud' is not one of debug, info, warning, error" in level.stderr
    ttl = run("serve", "--media", "none", env={"ROOMWIRE_TURN_TTL": "an hour"})
    assert ttl.returncode == 2 and "--turn-ttl" in ttl.stderr
    node = run("serve", "--media", "none", env={"ROOMWIRE_NODE_ID": "node 1"})
    assert node.returncode == 2 and "'node 1': a node id is 1 to 32 of A-Z a-z 0-9 - _" in node.stderr
    too_long = run("serve", "--media", "none", "--node-id", "n" * 33)
    assert too_long.returncode == 2 and "a node id is 1 to 32" in too_long.stderr


async def test_serve_is_configured_by_roomwire_variables_alone():
    """As the image runs it: no option on the command line, TURN credentials in the join ack."""
    port = free_port()
    urls = ["turn:turn.example:3478?transport=udp", "turn:turn.example:3478?transport=tcp"]
    env = {
        **clean_environment(SECRET),
        "ROOMWIRE_HOST": "127.0.0.1",
        "ROOMWIRE_PORT": str(port),
        "ROOMWIRE_ICE_SERVERS": '[{"urls": "stun:stun.example:3478"}]',
        "ROOMWIRE_TURN_URLS": " ".join(urls),
        "ROOMWIRE_TURN_SECRET": "turn-secret-never-logged",
        "ROOMWIRE_TURN_TTL": "600",
        "ROOMWIRE_LOG_LEVEL": "debug",
    }
    process = await asyncio.create_subprocess_exec(
        *ROOMWIRE, "serve", "--media", "none", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output = await read_until(process, "serving on")
        assert f"serving on http://127.0.0.1:{port}/" in output
        token = TokenIssuer(SECRET).mint(identity="ann", room="r")
        client, ack = await joined_client(f"http://127.0.0.1:{port}", token)
        await client.close()
    finally:
        process.terminate()
        rest, _ = await process.communicate()
    stun, turn = ack["iceServers"]
    assert stun == {"urls": "stun:stun.example:3478"}
    assert turn["urls"] == urls and turn["username"].endswith(":ann")
    assert abs(int(turn["username"].split(":")[0]) - (time.time() + 600)) < 10
    output += rest.decode()
    assert "clients get TURN credentials for " + " ".join(urls) + ", valid 600 s" in output
    assert "turn-secret-never-logged" not in output
