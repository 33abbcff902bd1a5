"""The `roomwire` command: `serve`, `token`, and commands that installed plugins add (`bot`)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
import json
import logging
import os
import re
import secrets
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from .protocol import Grants, ProtocolError
from .tokens import DEFAULT_TTL, TokenIssuer
from .turn import DEFAULT_TTL as DEFAULT_TURN_TTL
from .turn import TurnCredentials

LOG_LEVELS = ("debug", "info", "warning", "error")
NODE_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
SECRET_HELP = (
    "set ROOMWIRE_SECRET (or pass --secret) to a long random string, for example:\n"
    "  export ROOMWIRE_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')\n"
    "or run `roomwire serve --dev` on your own machine to try it out"
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_ice_servers(raw: str) -> list[dict[str, object]]:
    try:
        servers = json.loads(raw)
    except json.JSONDecodeError as exc:
        example = '[{"urls": "stun:host:3478"}]'
        raise SystemExit(f"roomwire: --ice-servers must be JSON ({exc}); e.g. '{example}'") from None
    if not isinstance(servers, list) or not all(isinstance(s, dict) and "urls" in s for s in servers):
        raise SystemExit("roomwire: --ice-servers must be a JSON list of {urls, username?, credential?}")
    return servers


def from_env_list(given: list[str] | None, variable: str) -> list[str]:
    """A repeatable option, else its variable's space-separated values."""
    return given if given else os.environ.get(variable, "").split()


def port_number(text: str) -> int:
    if not (text.isdigit() and int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number 0..65535 (--port, ROOMWIRE_PORT)")
    return int(text)


def node_id(text: str) -> str:
    if not NODE_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r}: a node id is 1 to 32 of A-Z a-z 0-9 - _ (ROOMWIRE_NODE_ID)")
    return text


def log_level(text: str) -> str:
    if text.lower() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LOG_LEVELS)} (ROOMWIRE_LOG_LEVEL)")
    return text.lower()


def turn_credentials(args: argparse.Namespace) -> TurnCredentials | None:
    """TURN REST credentials from --turn-url/--turn-secret/--turn-ttl; ValueError says what is wrong."""
    urls = from_env_list(args.turn_url, "ROOMWIRE_TURN_URLS")
    secret = args.turn_secret or os.environ.get("ROOMWIRE_TURN_SECRET")
    if not urls and not secret:
        return None
    if not secret:
        raise ValueError(
            "--turn-url needs the secret that the TURN server checks credentials with: set "
            "ROOMWIRE_TURN_SECRET (or pass --turn-secret) to coturn's static-auth-secret"
        )
    if not urls:
        raise ValueError(
            "a TURN secret without a TURN server: add --turn-url turn:HOST:3478?transport=udp "
            "(repeatable; or ROOMWIRE_TURN_URLS), or unset ROOMWIRE_TURN_SECRET"
        )
    turn = TurnCredentials(urls, secret, args.turn_ttl)
    logging.getLogger("roomwire.turn").info("clients get TURN credentials for %s, valid %d s", " ".join(urls), turn.ttl)
    return turn


# Young objects are collected after this many allocations (CPython's default: 700). What a
# connection allocates per read, write and heartbeat lives a few seconds; with the default, it
# reaches the oldest generation and every few seconds a full collection walks every object of
# every connection: at 10,000 connections, most of an idle server's CPU (docs/benchmarks.md).
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """For the process `roomwire serve` runs (an embedding app tunes its own process)."""
    gc.freeze()  # what imports and the app's construction made lives as long as the process
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from .access_log import RedactingAccessLogger
    from .server import RUNNER_OPTIONS, ServeConfig, build_app

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        turn = turn_credentials(args)
    except ValueError as exc:
        print(f"roomwire: {exc}", file=sys.stderr)
        return 2
    secret = args.secret or os.environ.get("ROOMWIRE_SECRET")
    if not secret:
        if not args.dev:
            print(f"roomwire: no secret to sign tokens with.\n{SECRET_HELP}", file=sys.stderr)
            return 2
        secret = secrets.token_urlsafe(32)
        print("roomwire: dev mode with a fresh secret for this run (tokens die with the process)")
    if args.dev and not is_loopback(args.host):
        print(
            f"roomwire: WARNING: dev mode on {args.host}: anyone who can reach it can mint tokens "
            "with POST /api/dev/token. Use it on localhost only.",
            file=sys.stderr,
        )
    config = ServeConfig(
        secret=secret,
        host=args.host,
        port=args.port,
        dev=args.dev,
        cors_origins=from_env_list(args.cors_origin, "ROOMWIRE_CORS_ORIGINS"),
        frame_ancestors=from_env_list(args.frame_ancestor, "ROOMWIRE_FRAME_ANCESTORS"),
        ice_servers=parse_ice_servers(args.ice_servers),
        turn=turn,
        media=args.media,
        redis_url=args.redis_url or None,
        node_id=args.node_id or None,
    )
    try:
        app, _ = build_app(config)
    except ValueError as exc:
        print(f"roomwire: {exc}", file=sys.stderr)
        return 2
    tune_gc()
    try:  # web.run_app makes its own loop unless handed one
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    mode = " (dev mode)" if args.dev else ""
    url = f"http://{args.host}:{args.port}/"

    def announce(_: str) -> None:
        print(f"roomwire: serving on {url}{mode}; open it in a browser. Ctrl+C stops.", flush=True)

    web.run_app(
        app,
        host=args.host,
        port=args.port,
        access_log_class=RedactingAccessLogger,
        print=announce,
        loop=loop,
        **RUNNER_OPTIONS,
    )
    return 0


def token(args: argparse.Namespace) -> int:
    secret = args.secret or os.environ.get("ROOMWIRE_SECRET")
    if not secret:
        print(f"roomwire: no secret to sign the token with.\n{SECRET_HELP}", file=sys.stderr)
        return 2
    if args.room is None and not args.admin:
        print("roomwire: --room is required (only an --admin token may omit it)", file=sys.stderr)
        return 2
    try:
        minted = TokenIssuer(secret).mint(
            identity=args.identity,
            room=args.room,
            name=args.name or "",
            grants=Grants(admin=args.admin),
            ttl=args.ttl,
        )
    except (ValueError, ProtocolError) as exc:
        print(f"roomwire: {exc}", file=sys.stderr)
        return 2
    print(minted)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roomwire", description="Real-time rooms over Socket.IO and WebRTC.")
    commands = parser.add_subparsers(dest="command", required=True)

    # Every option a deployment sets also reads a ROOMWIRE_* variable (the image is configured
    # that way); secrets are better there than on the command line, where `ps` shows them.
    env = os.environ.get
    p = commands.add_parser("serve", help="run the server")
    p.add_argument("--host", default=env("ROOMWIRE_HOST", "127.0.0.1"), help="(ROOMWIRE_HOST; 127.0.0.1)")
    p.add_argument("--port", type=port_number, default=env("ROOMWIRE_PORT", "8080"), help="(ROOMWIRE_PORT; 8080)")
    p.add_argument("--secret", help="token signing secret (prefer the ROOMWIRE_SECRET variable)")
    p.add_argument("--dev", action="store_true", help="development mode: POST /api/dev/token mints tokens")
    p.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="allow browser pages from this origin (repeatable; ROOMWIRE_CORS_ORIGINS, "
        "space-separated); none by default",
    )
    p.add_argument(
        "--frame-ancestor",
        action="append",
        metavar="ORIGIN",
        help="let pages of this origin frame the web client (repeatable; ROOMWIRE_FRAME_ANCESTORS, "
        "space-separated); only its own by default",
    )
    p.add_argument(
        "--ice-servers",
        default=env("ROOMWIRE_ICE_SERVERS", "[]"),
        help="JSON list of ICE servers handed to clients and used by the SFU (ROOMWIRE_ICE_SERVERS)",
    )
    p.add_argument(
        "--turn-url",
        action="append",
        metavar="URL",
        help="TURN server for per-participant credentials, e.g. turn:turn.example:3478?transport=udp "
        "(repeatable; ROOMWIRE_TURN_URLS, space-separated); needs the TURN secret",
    )
    p.add_argument(
        "--turn-secret", help="the TURN server's static-auth-secret (prefer the ROOMWIRE_TURN_SECRET variable)"
    )
    p.add_argument(
        "--turn-ttl",
        type=int,
        default=env("ROOMWIRE_TURN_TTL", str(DEFAULT_TURN_TTL)),
        metavar="SECONDS",
        help=f"lifetime of TURN credentials, at most 24 h (ROOMWIRE_TURN_TTL; {DEFAULT_TURN_TTL})",
    )
    p.add_argument(
        "--redis-url",
        default=env("ROOMWIRE_REDIS_URL"),
        help="run as one of many nodes sharing this Redis (redis://host:6379/0; ROOMWIRE_REDIS_URL)",
    )
    p.add_argument(
        "--node-id",
        type=node_id,
        default=env("ROOMWIRE_NODE_ID"),
        help="this node's name among many, in logs and Redis keys (ROOMWIRE_NODE_ID; random)",
    )
    p.add_argument("--media", default="sfu", help="media backend (entry point name) or `none`")
    p.add_argument(
        "--log-level",
        type=log_level,
        default=env("ROOMWIRE_LOG_LEVEL", "info"),
        help=f"{', '.join(LOG_LEVELS)} (ROOMWIRE_LOG_LEVEL; info)",
    )
    p.set_defaults(run=serve)

    t = commands.add_parser("token", help="mint an access token offline")
    t.add_argument("--room")
    t.add_argument("--identity", required=True)
    t.add_argument("--name")
    t.add_argument("--ttl", type=int, default=DEFAULT_TTL)
    t.add_argument("--admin", action="store_true")
    t.add_argument("--secret", help="signing secret (prefer the ROOMWIRE_SECRET variable)")
    t.set_defaults(run=token)

    for plugin in entry_points(group="roomwire.commands"):
        try:
            register = plugin.load()
        except ImportError as exc:  # a broken optional plugin must not take `serve` down with it
            print(f"roomwire: command {plugin.name!r} is unavailable: {exc}", file=sys.stderr)
            continue
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
