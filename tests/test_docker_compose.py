"""docker-compose.yml is a valid Compose file with the parts docs/operations.md promises."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from tests.conftest import REPO, require_part

COMPOSE = REPO / "docker-compose.yml"


def test_compose_file_validates_against_the_compose_spec() -> None:
    require_part(
        importlib.util.find_spec("check_jsonschema") is not None,
        "check-jsonschema",
        ".venv/bin/pip install check-jsonschema (it is in the dev extra)",
    )
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_scalable_nodes_of_the_image_on_redis_with_coturn_sharing_their_turn_secret() -> None:
    require_part(importlib.util.find_spec("ruamel") is not None, "ruamel.yaml", "comes with check-jsonschema")
    from ruamel.yaml import YAML

    compose = YAML(typ="safe").load(COMPOSE.read_text())
    services = compose["services"]
    assert {"node", "redis", "coturn"} <= set(services)
    assert services["node"]["deploy"]["replicas"] == 2 and services["node"]["ports"] == ["8081-8088:8080"]
    coturn = services["coturn"]["command"]
    assert "--use-auth-secret" in coturn
    (coturn_secret,) = [arg.split("=", 1)[1] for arg in coturn if arg.startswith("--static-auth-secret=")]
    for name in ("node",):
        node = services[name]
        assert node["build"] == "." and "command" not in node, "nodes run the image's CMD: no install at start"
        environment = node["environment"]
        assert environment["ROOMWIRE_REDIS_URL"] == "redis://redis:6379/0"
        assert environment["ROOMWIRE_TURN_SECRET"] == coturn_secret
        urls = environment["ROOMWIRE_TURN_URLS"].split()
        assert urls == [f"turn:${{TURN_HOST:-localhost}}:3478?transport={t}" for t in ("udp", "tcp")]
        assert "ROOMWIRE_ICE_SERVERS" not in environment, "no static TURN password any more"
