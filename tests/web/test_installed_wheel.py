"""roomwire as a Python user installs it: `pip wheel .`, the wheel installed into a fresh venv,
`roomwire serve --dev` started from an empty folder, and a Chromium page joins a room."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, free_port, require_node_modules
from tests.web.conftest import join

pytestmark = pytest.mark.timeout(300)

PIP_QUIET = ("-q", "--disable-pip-version-check")
SKIPPED = {".git", ".venv", "test-artifacts", ".pytest_cache", ".ruff_cache", ".hypothesis", "__pycache__"}


def source_copy(target: Path) -> Path:
    """The working tree as a clean clone plus `npm ci --prefix web` has it (no build leftovers)."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder)
        skipped = {n for n in names if n in SKIPPED or n.endswith(".egg-info")}
        if here == REPO:
            skipped |= {"build", "dist"} & set(names)
        if "node_modules" in names and here != REPO / "web":
            skipped.add("node_modules")
        return skipped

    return Path(shutil.copytree(REPO, target / "src", ignore=ignore))


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    require_node_modules("web")
    tmp = tmp_path_factory.mktemp("wheel")
    source = source_copy(tmp)
    run(sys.executable, "-m", "pip", *PIP_QUIET, "wheel", "--no-deps", "-w", str(tmp / "dist"), str(source))
    (wheel,) = (tmp / "dist").glob("roomwire-*.whl")
    run(sys.executable, "-m", "venv", str(tmp / "venv"))
    run(str(tmp / "venv" / "bin" / "python"), "-m", "pip", *PIP_QUIET, "install", str(wheel))
    yield wheel, tmp / "venv"


def run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"


def test_the_wheel_holds_one_package_with_the_browser_client(wheel_venv: tuple[Path, Path]) -> None:
    wheel, _ = wheel_venv
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"roomwire", "roomwire-0.1.0.dist-info"}
    for expected in (
        "roomwire/signaling/server.py",
        "roomwire/media/sfu.py",
        "roomwire/media/bot/client.py",
        "roomwire/web/index.html",
        "roomwire/web/room.html",
        "roomwire/web/assets/room.js",
        "roomwire/web/node_modules/socket.io-client/dist/socket.io.esm.min.js",
    ):
        assert expected in names, expected
    assert not [name for name in names if "node_modules" in name and "socket.io-client/dist" not in name]


def test_nothing_but_roomwire_is_installed_at_the_top_level(wheel_venv: tuple[Path, Path]) -> None:
    _, venv = wheel_venv
    python = str(venv / "bin" / "python")
    probe = (
        "import importlib.util, roomwire.signaling, roomwire.media, roomwire.media.bot, roomwire.web;"
        "print([n for n in ('signaling', 'media', 'web') if importlib.util.find_spec(n)])"
    )
    found = subprocess.run([python, "-c", probe], check=True, capture_output=True, text=True, cwd=venv)
    assert found.stdout.strip() == "[]"


@pytest.mark.asyncio(loop_scope="session")
async def test_the_installed_server_serves_the_client_from_an_empty_folder(
    wheel_venv: tuple[Path, Path], new_page: Any, tmp_path: Path
) -> None:
    _, venv = wheel_venv
    port = free_port()
    empty = tmp_path / "empty"
    empty.mkdir()
    server = await asyncio.create_subprocess_exec(
        str(venv / "bin" / "roomwire"), "serve", "--dev", "--port", str(port),
        cwd=empty, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": ""},
    )  # fmt: skip
    try:
        assert server.stdout is not None
        async with asyncio.timeout(30):
            while b"serving on" not in (line := await server.stdout.readline()):
                assert line, "roomwire serve exited before serving"
        page = await new_page()
        await join(page, f"http://127.0.0.1:{port}/r/wheel", "Wendy")
        assert await page.get_by_test_id("participant-list").locator("[data-identity]").count() == 1
    finally:
        server.terminate()
        await server.wait()
