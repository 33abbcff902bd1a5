"""docker-compose.yml is a valid Compose file with the parts docs/operations.md promises."""

from __future__ import annotations

import importlib.util
import json
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
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_two_nodes_on_redis_and_coturn() -> None:
    require_part(importlib.util.find_spec("ruamel") is not None, "ruamel.yaml", "comes with check-jsonschema")
    from ruamel.yaml import YAML

    compose = YAML(typ="safe").load(COMPOSE.read_text())
    services = compose["services"]
    assert {"node1", "node2", "redis", "coturn"} <= set(services)
    for name in ("node1", "node2"):
        node = services[name]
        assert node["environment"]["ROOMWIRE_REDIS_URL"] == "redis://redis:6379/0"
        ice = node["environment"]["ROOMWIRE_ICE_SERVERS"]
        for variable, value in (("${TURN_HOST:-localhost}", "turn.example"), ("${TURN_PASSWORD:-change-me}", "pw")):
            ice = ice.replace(variable, value)
        assert json.loads(ice)[0]["username"] == "roomwire"
        assert "roomwire serve" in node["command"][-1]
    assert {"3478:3478/udp", "3478:3478/tcp"} <= set(services["coturn"]["ports"])
    assert "--user=roomwire:${TURN_PASSWORD:-change-me}" in services["coturn"]["command"]
