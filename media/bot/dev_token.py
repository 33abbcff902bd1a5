"""Server URLs, and tokens from a dev-mode server (`POST /api/dev/token`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar
from urllib.parse import urlsplit

import aiohttp

from .errors import BotError

TIMEOUT = 15.0

Option = TypeVar("Option")
Result = TypeVar("Result")


def split_url(url: str) -> tuple[str, str]:
    """`http://host:port/prefix` -> (`http://host:port`, `/prefix`): roomwire may be embedded under a prefix."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BotError("bad_request", f"{url!r} is not an http(s):// URL")
    return f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")


async def first_reachable(
    options: Sequence[Option],
    attempt: Callable[[Option], Awaitable[Result]],
    skipped: Callable[[BotError], None],
) -> Result:
    """`attempt` each option (a server, the nodes of a cluster) in turn until one can be
    reached: its result, or the last one's error. `skipped` hears why each was passed over."""
    for option in options[:-1]:
        try:
            return await attempt(option)
        except BotError as exc:
            if exc.code != "unreachable":
                raise
            skipped(exc)
    return await attempt(options[-1])


async def dev_token(url: str, room: str, name: str = "") -> tuple[str, str]:
    """A token from a dev-mode server (`POST /api/dev/token`): returns (token, identity)."""
    origin, prefix = split_url(url)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session,
            session.post(f"{origin}{prefix}/api/dev/token", json={"room": room, "name": name}) as response,
        ):
            if response.status == 404:
                raise BotError("not_found", f"{url} does not mint dev tokens (is it running with --dev?)")
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BotError("unreachable", f"cannot reach {url}: {exc or type(exc).__name__}") from None
    except ValueError:
        raise BotError("bad_request", f"{url} answered something that is not JSON") from None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        raise BotError(body["error"].get("code", "internal"), body["error"].get("message", ""))
    if not isinstance(body, dict) or not isinstance(body.get("token"), str):
        raise BotError("internal", f"{url} answered the dev token request without a token")
    return body["token"], str(body.get("identity", ""))
