"""The bot kit speaks the wire protocol and imports no server code (checked in a fresh
interpreter, where nothing else has been imported yet)."""

from __future__ import annotations

import subprocess
import sys

SERVER_MODULES = (
    "aiohttp.web",
    "prometheus_client",
    "jwt",
    "roomwire.signaling.server",
    "roomwire.signaling.socket_api",
    "roomwire.signaling.rooms",
    "roomwire.signaling.tokens",
    "roomwire.media.sfu",
)


def test_the_bot_kit_imports_no_server_code() -> None:
    probe = (
        "import sys, roomwire.media.bot, roomwire.media.bot.sinks, roomwire.media.sources;"
        f"print(sorted(m for m in sys.modules if m.startswith({SERVER_MODULES!r})))"
    )
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"
