"""Headless bot peers: `Bot` joins a room like any participant (see docs/bots.md).

`Bot` and the names beside it are loaded when first used: `roomwire.media.bot.cli` is imported
by every `roomwire` command (its entry point), and they need aiortc and PyAV (~50 MiB, most of a
signaling server's start-up). `dev_token` and `BotError` are light, and imported at once:
`dev_token` is also the name of a submodule, which would otherwise shadow the function."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .dev_token import dev_token
from .errors import BotError

if TYPE_CHECKING:
    from .client import Bot, Message
    from .peers import Publication
    from .tracks import RemoteTrack

__all__ = ["Bot", "BotError", "Message", "Publication", "RemoteTrack", "dev_token"]

_MODULE_OF = {
    "Bot": ".client",
    "Message": ".client",
    "Publication": ".peers",
    "RemoteTrack": ".tracks",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
