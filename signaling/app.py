"""The composition root: builds the standalone roomwire app (signaling + media + web client).

Media backends are found through the `roomwire.media` entry-point group, so `signaling` never
imports aiortc; `media` registers itself there as `sfu`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from aiohttp import web
from roomwire.web import WEB_DIR

from .media_backend import MediaBackend
from .server import SignalingServer
from .web_routes import add_web_routes

log = logging.getLogger("roomwire.app")

DEFAULT_WEB_DIR = WEB_DIR


@dataclass
class ServeConfig:
    secret: str
    host: str = "127.0.0.1"
    port: int = 8080
    dev: bool = False
    cors_origins: list[str] = field(default_factory=list)
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    media: str | None = "sfu"
    web_dir: Path = DEFAULT_WEB_DIR
    redis_url: str | None = None  # many nodes: shared state and Socket.IO routing through Redis


def load_media(name: str | None, ice_servers: list[dict[str, Any]]) -> MediaBackend | None:
    if name is None or name == "none":
        return None
    found = {ep.name: ep for ep in entry_points(group="roomwire.media")}
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise SystemExit(f"roomwire: no media backend {name!r} (available: {known}); try --media none")
    factory = found[name].load()
    return factory(ice_servers=ice_servers)


def redis_parts(url: str) -> dict[str, Any]:
    """SignalingServer options for a node of a multi-node deployment (needs the `redis` extra)."""
    try:
        import socketio

        from .redis_backend import RedisBackend
    except ImportError as exc:  # redis is an optional extra: `pip install 'roomwire[redis]'`
        raise ValueError(f"--redis-url needs the redis package: pip install 'roomwire[redis]' ({exc})") from None
    return {"backend": RedisBackend(url), "client_manager": socketio.AsyncRedisManager(url)}


def build_app(config: ServeConfig) -> tuple[web.Application, SignalingServer]:
    app = web.Application(client_max_size=1024 * 1024)
    shared = redis_parts(config.redis_url) if config.redis_url else {}
    server = SignalingServer(
        secret=config.secret,
        dev=config.dev,
        cors_origins=config.cors_origins,
        ice_servers=config.ice_servers,
        media=load_media(config.media, config.ice_servers),
        **shared,
    )
    server.attach(app)
    add_web_routes(app, prefix="", web_dir=config.web_dir, dev=config.dev)
    return app, server
