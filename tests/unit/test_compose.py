"""compose.yaml: it parses, its references hold, and every command it runs exists in the package.

No Docker engine runs here, so the file is checked as data: each sftrenew service's command is parsed by
sftrenew's own argument parser (an unknown command or flag fails), and the Dockerfile it builds from exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sftrenew import build_parser

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def test_services_reference_what_exists(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"redis", "postgres", "migrate", "worker", "scheduler", "flower", "web", "demo"} <= set(services)
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(".") or source in compose["volumes"], f"{name}: volume {source}"
    assert (ROOT / "Dockerfile").is_file() and (ROOT / ".env.example").is_file()


def test_every_sftrenew_command_exists(compose: dict[str, Any]) -> None:
    parser = build_parser()
    checked = 0
    for name, service in compose["services"].items():
        if service.get("image") != "sftrenew:latest":
            continue
        args = parser.parse_args([str(part) for part in service["command"]])
        assert callable(args.run), name
        checked += 1
    assert checked == 6


def test_redis_is_durable_and_flower_is_local_and_authenticated(compose: dict[str, Any]) -> None:
    redis = " ".join(compose["services"]["redis"]["command"])
    assert (
        "--appendonly yes" in redis and "--maxmemory-policy noeviction" in redis and "--requirepass" in redis
    )
    assert compose["services"]["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    assert compose["services"]["web"]["ports"] == ["127.0.0.1:8080:8080"]
    assert "SFTRENEW_WEB_SECRET=" in (ROOT / ".env.example").read_text()
    assert "SFTRENEW_FLOWER_PASSWORD=" in (ROOT / ".env.example").read_text()
