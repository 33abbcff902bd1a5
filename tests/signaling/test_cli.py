"""The `roomwire` command as a user runs it: a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

from roomwire.signaling import TokenIssuer

from tests.conftest import SECRET

ROOMWIRE = [sys.executable, "-m", "roomwire.signaling.cli"]


def run(*args: str, secret: str | None = SECRET, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ROOMWIRE_SECRET"}
    if secret is not None:
        env["ROOMWIRE_SECRET"] = secret
    return subprocess.run([*ROOMWIRE, *args], capture_output=True, text=True, env=env, timeout=timeout)


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
