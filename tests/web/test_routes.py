"""The web client's HTTP routes, through a real aiohttp server (no browser needed)."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from roomwire.signaling.web_routes import add_web_routes

from tests.conftest import REPO, require_node_modules, start_app

WEB = REPO / "web"
Serve = Callable[..., Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def make(
        prefix: str = "", web_dir: Path = WEB, dev: bool = False, frame_ancestors: tuple[str, ...] = ()
    ) -> str:
        app = web.Application()
        add_web_routes(app, prefix=prefix, web_dir=web_dir, dev=dev, frame_ancestors=frame_ancestors)
        runner, url = await start_app(app)
        runners.append(runner)
        return url

    yield make
    for runner in runners:
        await runner.cleanup()


async def get(url: str, **kwargs: object) -> tuple[int, str, str, aiohttp.typedefs.LooseHeaders]:
    async with aiohttp.ClientSession() as http, http.get(url, allow_redirects=False, **kwargs) as resp:
        return resp.status, resp.content_type, await resp.text(), resp.headers


async def test_pages_assets_and_socket_io_client_under_a_prefix(serve: Serve) -> None:
    require_node_modules("web")
    url = await serve(prefix="/embed/", dev=True) + "/embed"

    status, _, _, headers = await get(url)
    assert status == 308 and headers["Location"] == "/embed/"
    status, ctype, body, _ = await get(url + "/")
    assert (status, ctype) == (200, "text/html")
    assert '<meta name="roomwire-dev" content="true">' in body
    assert 'data-testid="join-button"' in body
    status, ctype, body, _ = await get(url + "/r/standup_2")
    assert (status, ctype) == (200, "text/html")
    assert 'data-testid="connection-status"' in body
    status, _, _, headers = await get(url + "/r/standup_2/?mode=mesh")
    assert status == 308 and headers["Location"] == "/embed/r/standup_2?mode=mesh"
    status, _, body, _ = await get(url + "/r/not%20a%20room")
    assert status == 404 and "No such room" in body

    status, ctype, body, _ = await get(url + "/vendor/socket.io.esm.min.js")
    assert (status, ctype) == (200, "text/javascript")
    assert "Socket.IO v4" in body and " as io" in body
    assert (await get(url + "/vendor/socket.io.js"))[0] == 404
    status, ctype, _, headers = await get(url + "/assets/room.js")
    assert (status, headers["Cache-Control"]) == (200, "no-cache")
    assert ctype in ("text/javascript", "application/javascript")  # both run as modules
    assert (await get(url + "/assets/../../pyproject.toml"))[0] in (403, 404)


async def test_every_url_the_pages_and_modules_use_resolves(serve: Serve) -> None:
    """Relative links only, and none broken: the client works at any prefix."""
    require_node_modules("web")
    url = await serve(prefix="/deep/mount")
    pages = {f"{url}/deep/mount/": WEB / "index.html", f"{url}/deep/mount/r/room": WEB / "room.html"}
    checked = 0
    for page_url, page in pages.items():
        for ref in re.findall(r'(?:href|src)="([^"#]+)"', page.read_text()):
            assert not ref.startswith(("/", "http")), f"{page.name}: {ref} is not relative"
            target = str(aiohttp.client.URL(page_url).join(aiohttp.client.URL(ref)))
            assert (await get(target))[0] == 200, target
            checked += 1
    modules = f"{url}/deep/mount/assets/"
    for module in sorted((WEB / "assets").glob("*.js")):
        for ref in re.findall(r"from '(\.[^']+)'", module.read_text()):
            target = str(aiohttp.client.URL(modules + module.name).join(aiohttp.client.URL(ref)))
            assert (await get(target))[0] == 200, f"{module.name} imports {ref}: {target}"
            checked += 1
    assert checked > 15


async def test_without_npm_ci_pages_explain_the_fix(serve: Serve, tmp_path: Path) -> None:
    for name in ("index.html", "room.html"):
        shutil.copy(WEB / name, tmp_path / name)
    (tmp_path / "assets").symlink_to(WEB / "assets")
    url = await serve(web_dir=tmp_path)
    for path in ("/", "/r/standup"):
        status, ctype, body, _ = await get(url + path)
        assert (status, ctype) == (503, "text/html")
        assert "npm ci --prefix" in body
    status, ctype, body, _ = await get(url + "/vendor/socket.io.esm.min.js")
    assert (status, ctype) == (503, "text/javascript")
    assert "npm ci --prefix" in body


async def test_pages_may_be_framed_by_their_own_origin_only_unless_configured(serve: Serve) -> None:
    require_node_modules("web")
    for path in ("/", "/r/demo"):
        status, _, _, headers = await get(await serve() + path)
        assert status == 200
        assert "frame-ancestors 'self'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "SAMEORIGIN"
    status, _, _, headers = await get(await serve(frame_ancestors=("https://app.example",)) + "/")
    assert "frame-ancestors 'self' https://app.example" in headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in headers  # it cannot name another origin; CSP does
    with pytest.raises(ValueError, match="origin"):
        await serve(frame_ancestors=("https://x.example; script-src *",))
