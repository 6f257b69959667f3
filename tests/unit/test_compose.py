"""compose.yaml: valid by the compose specification's schema, its references hold, every command it runs
exists in the package, and it holds what issue 15 asked of it.

No Docker engine runs here, so the file is checked as data: it is validated against the compose
specification's JSON schema (tests/unit/data/compose/, with its source), each sftrenew service's command is
parsed by sftrenew's own argument parser (an unknown command or flag fails), and the rules a deployment
relies on are checked one by one: no secret on a command line, a healthcheck per long-running service,
a stop grace longer than a regeneration, images pinned, exactly one beat, the lab apart from production.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from pipeline.settings import Settings, read_secret_file
from pipeline.store.crypto import artifact_key
from sftrenew import build_parser

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).parent / "data" / "compose" / "compose-spec.json"
#: The only `${...}` compose fills in from .env: nothing secret.
INTERPOLATED = {"SFTRENEW_UID", "SFTRENEW_FLOWER_USER", "SFTRENEW_FLOWER_URL"}
LONG_RUNNING = ("redis", "postgres", "worker", "scheduler", "flower", "web")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def _sftrenew_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if s.get("image", "").startswith("sftrenew:")}


def _seconds(duration: str) -> float:
    """A compose duration (`1m30s`, `960s`, `2h`) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_compose_is_valid_by_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, errors
    # The schema does catch mistakes: an unknown key and a wrong type.
    broken = {**compose, "services": {**compose["services"], "x": {"image": "a:1", "restart": 5, "bogus": 1}}}
    assert len(list(validator.iter_errors(broken))) == 2


def test_services_reference_what_exists(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"redis", "postgres", "migrate", "worker", "scheduler", "flower", "web", "demo"} <= set(services)
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(".") or source in compose["volumes"], f"{name}: volume {source}"
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"], f"{name}: secret {secret}"
    assert (ROOT / "Dockerfile").is_file() and (ROOT / "secrets" / "README.md").is_file()


def test_every_sftrenew_command_exists(compose: dict[str, Any]) -> None:
    parser = build_parser()
    services = _sftrenew_services(compose)
    for name, service in services.items():
        args = parser.parse_args([str(part) for part in service["command"]])
        assert callable(args.run), name
        test = service.get("healthcheck", {}).get("test", [])
        if test[:2] == ["CMD", "sftrenew"]:
            assert callable(parser.parse_args(test[2:]).run), name
    assert len(services) == 6


def test_no_secret_on_a_command_line_or_in_the_file(compose: dict[str, Any]) -> None:
    """Commands and healthchecks show in `ps` and `docker inspect`: they name secret files, never values,
    and compose fills in nothing secret (`${...}` only for the image's uid and Flower's user)."""
    text = (ROOT / "compose.yaml").read_text()
    assert set(re.findall(r"(?<!\$)\$\{([A-Z_]+)", text)) == INTERPOLATED
    for name, service in compose["services"].items():
        shown = [*service.get("command", []), *service.get("entrypoint", [])]
        shown += service.get("healthcheck", {}).get("test", [])
        for part in map(str, shown):
            assert not re.search(r"\$\{[^}]*(PASSWORD|KEY|SECRET|TOKEN|NOTIFY)", part), (name, part)
            assert "--requirepass" not in part and not re.search(r"redis-cli\b.*\s-a\s", part), (name, part)
    redis = compose["services"]["redis"]
    script = redis["command"][-1]
    assert redis["command"][:2] == ["sh", "-ec"] and "redis-server -" in script  # config on standard input
    for line in ("appendonly yes", "maxmemory-policy noeviction", 'requirepass "$$password"'):
        assert line in script, line
    assert "REDISCLI_AUTH=" in redis["healthcheck"]["test"][1]


def test_long_running_services_have_healthchecks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), name
    for name in ("worker", "scheduler"):  # a Celery ping of this container's own worker
        assert services[name]["healthcheck"]["test"] == ["CMD", "sftrenew", "worker", "--ping"], name
    assert "/healthcheck" in " ".join(services["flower"]["healthcheck"]["test"])  # answers without login
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"][1]
    for name in ("worker", "scheduler", "flower", "demo"):
        assert services[name]["depends_on"]["redis"] == {"condition": "service_healthy"}, name


def test_workers_outwait_a_regeneration_and_restart_within_bounds(compose: dict[str, Any]) -> None:
    regenerate = Settings().ssh.regenerate_timeout
    environment = {**compose["services"]["worker"]["environment"]}
    assert "SFTRENEW_SSH_REGENERATE_TIMEOUT" not in environment  # else compare with that
    for name in ("worker", "scheduler"):
        assert _seconds(compose["services"][name]["stop_grace_period"]) > regenerate, name
    for name, service in _sftrenew_services(compose).items():
        # A refused setting exits 2: restarting cannot fix it, so never restart forever.
        policy = service.get("restart", "no")
        assert policy == "no" or re.fullmatch(r"on-failure:[1-9]\d?", policy), (name, policy)


#: PostgreSQL numbers its releases MAJOR.MINOR (16.15); everything else here MAJOR.MINOR.PATCH.
TWO_PART_VERSIONS = {"postgres"}


def _pinned(image: str) -> bool:
    """Whether `image` names one release: its full version, not `latest`, a major or a minor alone."""
    name, _, tag = image.partition(":")
    version = r"\d+\.\d+" if name in TWO_PART_VERSIONS else r"\d+\.\d+\.\d+"
    return bool(name) and re.fullmatch(version + r"(-[a-z0-9.-]+)?", tag) is not None


def test_every_image_is_pinned_by_version(compose: dict[str, Any]) -> None:
    images = {name: service["image"] for name, service in compose["services"].items()}
    assert all(_pinned(image) for image in images.values()), images
    floating = ("redis", "redis:7", "redis:7.4", "redis:latest", "postgres:16", "python:3.11-slim")
    assert not any(_pinned(image) for image in floating)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert {i for i in images.values() if i.startswith("sftrenew:")} == {f"sftrenew:{version}"}
    bases = re.findall(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert bases and all(_pinned(base) for base in bases), bases


def test_exactly_one_scheduler(compose: dict[str, Any]) -> None:
    beats = [name for name, s in compose["services"].items() if "--beat" in s.get("command", [])]
    assert beats == ["scheduler"]
    scheduler = compose["services"]["scheduler"]
    assert scheduler.get("deploy", {}).get("replicas", 1) == 1 and "profiles" not in scheduler


def _redis_databases(service: dict[str, Any]) -> set[str]:
    environment = service.get("environment", {})
    urls = [environment[v] for v in ("SFTRENEW_BROKER_URL", "SFTRENEW_RESULT_BACKEND") if v in environment]
    return {url.rsplit("/", 1)[1] for url in urls}


def test_the_lab_runs_apart_from_production(compose: dict[str, Any]) -> None:
    """The demo in its own profile: its own Redis databases and queue names (it cannot take production's
    tasks, nor production its), no PostgreSQL of production's, no beat."""
    services = compose["services"]
    lab = {name for name, s in services.items() if "lab" in s.get("profiles", [])}
    assert lab == {"demo"}
    demo = services["demo"]
    assert demo["command"][0] == "demo" and "--beat" not in demo["command"]
    production = set().union(*(_redis_databases(s) for n, s in services.items() if n not in lab))
    assert production == {"0", "1"} and _redis_databases(demo) == {"2", "3"}
    assert demo["environment"]["SFTRENEW_QUEUE_PREFIX"] == "lab"
    assert not any(
        "SFTRENEW_QUEUE_PREFIX" in s.get("environment", {}) for n, s in services.items() if n != "demo"
    )
    assert not any(v.startswith("SFTRENEW_DATABASE") for v in demo["environment"])  # its own SQLite
    assert set(demo["depends_on"]) == {"redis"}


def test_flower_is_local_and_authenticated(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert flower["environment"]["SFTRENEW_FLOWER_PASSWORD_FILE"] == "/run/secrets/flower_password"


def test_the_renewal_page_is_local_with_its_users_from_a_file(compose: dict[str, Any]) -> None:
    web = compose["services"]["web"]
    assert web["ports"] == ["127.0.0.1:8080:8080"]
    assert web["environment"]["SFTRENEW_WEB_USERS_FILE"] == "/etc/sftrenew/web-users"
    assert "/login" in " ".join(web["healthcheck"]["test"])  # the one page that answers without sign-in


def _ignored(patterns: list[str], path: str) -> bool:
    """Whether .dockerignore's `patterns` leave `path` (a top-level name) out of the build context."""
    return any(Path(path).match(p.rstrip("/")) or p.rstrip("/") == path for p in patterns)


def test_dockerignore_keeps_secrets_and_the_environment_out_of_the_image() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for path in (".venv", ".git", "secrets", ".env", "devices.env", "inventory", "demo", "tests"):
        assert _ignored(patterns, path), path
    copied = re.findall(r"^COPY\s+(.+?)\s+\S+$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    sources = [source for line in copied for source in line.split()]
    assert sources and not any(_ignored(patterns, source) for source in sources), sources
    assert all((ROOT / source).exists() for source in sources)


def test_the_secrets_script_makes_private_usable_files(tmp_path: Path) -> None:
    """secrets/create.sh makes every file compose mounts, mode 0600 in a 0700 folder, with values the
    settings accept, and keeps what exists when run again."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    shutil.copy(ROOT / "secrets" / "create.sh", folder)
    subprocess.run(["sh", str(folder / "create.sh")], check=True, capture_output=True)
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    for name, entry in compose["secrets"].items():
        path = tmp_path / entry["file"]
        assert path.parent == folder and stat.S_IMODE(path.stat().st_mode) == 0o600, name
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    key = read_secret_file("SFTRENEW_ARTIFACT_KEY_FILE", str(folder / "artifact_key"))
    assert len(artifact_key(key)) == 32
    passwords = [read_secret_file(n, str(folder / n)) for n in ("postgres_password", "redis_password")]
    assert all(re.fullmatch(r"[0-9a-f]{64}", p) for p in passwords) and passwords[0] != passwords[1]
    assert read_secret_file("SFTRENEW_NOTIFY_FILE", str(folder / "notify")) == ""
    (folder / "redis_password").chmod(0o600)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    subprocess.run(["sh", str(folder / "create.sh")], check=True, capture_output=True)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
