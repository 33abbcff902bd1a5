"""Headless bot peers: `Bot` joins a room like any participant (see docs/bots.md)."""

from .client import Bot, Message
from .dev_token import dev_token
from .errors import BotError
from .peers import Publication
from .tracks import RemoteTrack

__all__ = ["Bot", "BotError", "Message", "Publication", "RemoteTrack", "dev_token"]
