"""HTTP routes of the browser client in `web/`: two pages, their assets and socket.io-client.

The pages use relative URLs only (`assets/...` from `{prefix}/`, `../assets/...` from
`{prefix}/r/{room}`), so the client works under any prefix an embedding app mounts it at,
even behind a proxy that adds its own. socket.io-client is served from `web/node_modules`
(installed by `npm ci --prefix web`); without it the pages answer 503 with the fix.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from .protocol import valid_room

log = logging.getLogger(__name__)

# The self-contained ESM build: engine.io-client and the parser are bundled in.
SOCKET_IO_DIST = Path("node_modules/socket.io-client/dist")
SOCKET_IO_FILES = ("socket.io.esm.min.js", "socket.io.esm.min.js.map")
FRAME_ANCESTOR = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")
DEV_MARKER = '<meta name="roomwire-dev" content="false">'
# Nothing may come from another origin. Inline code and eval stay allowed, not for the client
# (it has none) but for browser automation (playwright's wait_for_function with an expression,
# add_script_tag) that end-to-end tests of embedding apps rely on.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
    "object-src 'none'; base-uri 'self'"
)


def html_headers(frame_ancestors: Sequence[str]) -> dict[str, str]:
    """The pages' headers. Only the page's own origin may frame it, unless an embedder names
    the origins that frame the client on purpose (`--frame-ancestor`)."""
    ancestors = " ".join(["'self'", *frame_ancestors])
    headers = {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": f"{CONTENT_SECURITY_POLICY}; frame-ancestors {ancestors}",
        "Referrer-Policy": "no-referrer",
    }
    if not frame_ancestors:
        # for browsers that predate frame-ancestors; it cannot name other origins
        headers["X-Frame-Options"] = "SAMEORIGIN"
    return headers


def socket_io_client_path(web_dir: Path) -> Path:
    return web_dir / SOCKET_IO_DIST / SOCKET_IO_FILES[0]


def add_web_routes(
    app: web.Application, *, prefix: str, web_dir: Path, dev: bool, frame_ancestors: Sequence[str] = ()
) -> None:
    """Register `GET {prefix}/`, `{prefix}/r/{room}`, `{prefix}/assets/*`, `{prefix}/vendor/*`.

    `frame_ancestors`: origins (`https://app.example`) allowed to frame the pages besides their own.
    """
    for origin in frame_ancestors:
        if not FRAME_ANCESTOR.fullmatch(origin):
            raise ValueError(f"a frame ancestor is an origin like https://app.example, not {origin!r}")
    headers = html_headers(frame_ancestors)
    prefix = prefix.rstrip("/")
    web_dir = web_dir.resolve()
    pages = {name: _load_page(web_dir / f"{name}.html", dev) for name in ("index", "room")}
    missing_hint = (
        f"socket.io-client is not installed: {socket_io_client_path(web_dir)} is missing. "
        f"Run `npm ci --prefix {web_dir}` and restart the server."
    )
    if not socket_io_client_path(web_dir).is_file():
        log.error("web client disabled until installed: %s", missing_hint)

    def page(name: str) -> web.Response:
        if not socket_io_client_path(web_dir).is_file():
            log.error("web client page requested but %s", missing_hint)
            return _error_page(503, "The web client is not installed", missing_hint)
        return web.Response(text=pages[name], content_type="text/html", headers=headers)

    async def index(_: web.Request) -> web.Response:
        return page("index")

    async def room(request: web.Request) -> web.Response:
        name = request.match_info["room"]
        if not valid_room(name):
            return _error_page(404, "No such room", "Room names are 1 to 64 letters, digits, '-' or '_'.")
        return page("room")

    async def room_with_slash(request: web.Request) -> web.Response:
        # `../assets` must resolve against `/r/{room}`, not `/r/{room}/`.
        raise web.HTTPPermanentRedirect(_same_query(request, request.path.rstrip("/")))

    async def to_index(request: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect(_same_query(request, request.path + "/"))

    async def vendor(request: web.Request) -> web.StreamResponse:
        filename = request.match_info["file"]
        path = web_dir / SOCKET_IO_DIST / filename
        if filename not in SOCKET_IO_FILES or not path.is_file():
            if filename in SOCKET_IO_FILES:
                log.error("%s", missing_hint)
                return web.Response(
                    status=503,
                    text=f"throw new Error({missing_hint!r});\n",
                    content_type="text/javascript",
                )
            raise web.HTTPNotFound()
        content_type = "text/javascript" if filename.endswith(".js") else "application/json"
        return web.FileResponse(path, headers={"Content-Type": content_type})

    if prefix:
        app.router.add_get(prefix, to_index)
    app.router.add_get(f"{prefix}/", index)
    app.router.add_get(f"{prefix}/r/{{room}}", room)
    app.router.add_get(f"{prefix}/r/{{room}}/", room_with_slash)
    app.router.add_get(f"{prefix}/vendor/{{file}}", vendor)
    app.router.add_static(f"{prefix}/assets", web_dir / "assets", append_version=False)

    async def revalidate_assets(request: web.Request, response: web.StreamResponse) -> None:
        # Pages and modules must match after an upgrade: revalidate (a cheap 304) every time.
        if request.path.startswith((f"{prefix}/assets/", f"{prefix}/vendor/")):
            response.headers.setdefault("Cache-Control", "no-cache")

    app.on_response_prepare.append(revalidate_assets)


def _load_page(path: Path, dev: bool) -> str:
    text = path.read_text(encoding="utf-8")
    if DEV_MARKER not in text:
        raise RuntimeError(f"{path} lacks the dev marker {DEV_MARKER!r}")
    return text.replace(DEV_MARKER, DEV_MARKER.replace("false", "true" if dev else "false"))


def _same_query(request: web.Request, path: str) -> str:
    # `?token=`, `?mode=` and `?watch=` must survive the redirect.
    return path + (f"?{request.query_string}" if request.query_string else "")


def _error_page(status: int, title: str, detail: str) -> web.Response:
    body = (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · roomwire</title>"
        '<body style="font:16px system-ui,sans-serif;max-width:40rem;margin:4rem auto;'
        'padding:0 1rem;color:#1f2328">'
        f"<h1 style=font-size:1.4rem>{html.escape(title)}</h1>"
        f"<p>{html.escape(detail)}</p></body></html>"
    )
    return web.Response(status=status, text=body, content_type="text/html")
