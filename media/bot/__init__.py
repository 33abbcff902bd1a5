"""Headless bot peers: `Bot` joins a room like any participant (see docs/bots.md)."""

from .client import Bot, BotError, Message, dev_token
from .peers import Publication
from .tracks import RemoteTrack

__all__ = ["Bot", "BotError", "Message", "Publication", "RemoteTrack", "dev_token"]
