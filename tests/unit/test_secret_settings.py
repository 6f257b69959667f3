"""Secrets in their place (issues 11 and 15): a settings object never prints a secret, Celery's configuration
holds none, each role's environment holds only the secrets that role uses, secrets may come from files
(Docker secrets, `SFTRENEW_*_FILE`) with passwords percent-encoded into URLs, and compose.yaml follows the
same rule."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pytest
import redis
import yaml
from celery.worker import control
from kombu.utils.url import url_to_parts
from sqlalchemy.engine import make_url

from pipeline.errors import ConfigError
from pipeline.settings import (
    OWN_FILE_SETTING,
    PASSWORD_FILES,
    SECRET_FILE_VARIABLES,
    SECRET_VARIABLES,
    SETTINGS_VARIABLES,
    SecretUrl,
    load_settings,
    redact_url,
    with_password,
)
from sftrenew.environments import (
    DEVICE_ROLES,
    RESTRICTED,
    ROLE_VARIABLES,
    Role,
    environment,
    environment_for,
)
from tasks.context import settings_of
from workers.app import make_celery

REDIS_PW, RESULT_PW, PG_PW = "redis-pw-4f1d", "result-pw-9a2c", "pg-pw-77e0"
KEY, FLOWER_PW = "k" * 43 + "=", "flower-pw-31b8"
ENVIRON = {
    "SFTRENEW_BROKER_URL": f"redis://:{REDIS_PW}@redis.example:6379/0",
    "SFTRENEW_RESULT_BACKEND": f"redis://default:{RESULT_PW}@redis.example:6379/1",
    "SFTRENEW_DATABASE_URL": f"postgresql://sftrenew:{PG_PW}@pg.example:5432/sftrenew",
    "SFTRENEW_ARTIFACT_KEY": KEY,
    "SFTRENEW_FLOWER_PASSWORD": FLOWER_PW,
}
SECRETS = (REDIS_PW, RESULT_PW, PG_PW, KEY, FLOWER_PW)
ROOT = Path(__file__).resolve().parents[2]


def _shown(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def test_settings_never_print_a_secret_and_still_hand_it_over() -> None:
    settings = load_settings(ENVIRON)
    for text in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
        assert not _shown(text), text
    # What is not secret stays readable: an operator can tell which Redis and which database.
    assert "redis.example:6379/0" in repr(settings) and "pg.example:5432/sftrenew" in str(settings)
    assert settings.celery.broker_url.get_secret_value() == ENVIRON["SFTRENEW_BROKER_URL"]
    assert settings.database_url.get_secret_value() == ENVIRON["SFTRENEW_DATABASE_URL"]


def test_every_setting_that_hides_its_value_is_a_secret_variable_and_back() -> None:
    values = {
        "SFTRENEW_DATABASE_URL": "postgresql://u:tell-no-one@h/db",
        "SFTRENEW_BROKER_URL": "redis://:tell-no-one@h/0",
        "SFTRENEW_RESULT_BACKEND": "redis://:tell-no-one@h/1",
        "SFTRENEW_FLOWER_URL": "https://tell-no-one.example/flower",
    }
    hidden = set()
    for name in SETTINGS_VARIABLES:
        try:
            settings = load_settings({name: values.get(name, "tell-no-one")})
        except ConfigError:  # a number, a flag: no text to hide
            continue
        if "tell-no-one" not in repr(settings):
            hidden.add(name)
    assert hidden == set(SECRET_VARIABLES)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:6379/0", "redis://:**********@h:6379/0"),
        ("redis://user:p@ss/w:rd@h/0", "redis://user:**********@h/0"),
        (
            "postgresql://u@h/db?sslmode=require&password=pw",
            "postgresql://**********@h/db?sslmode=require&password=**********",
        ),
        (
            "sentinel://:pw@h1:1;sentinel://:pw@h2:2",
            "sentinel://:**********@h1:1;sentinel://:**********@h2:2",
        ),
        ("sqlite:///var/lib/sftrenew.db", "sqlite:///var/lib/sftrenew.db"),
        ("not a url: pw", "**********"),
    ],
)
def test_a_url_shows_all_but_its_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert repr(SecretUrl(url)) == f"SecretUrl({shown!r})" and "pw" not in str(SecretUrl(url)).replace(
        "password", ""
    )


def test_celery_configuration_holds_no_secret() -> None:
    settings = load_settings(ENVIRON)
    app = make_celery(settings)
    assert settings_of(app) is settings  # tasks find the settings, but not through the configuration
    assert not any(value is settings for value in app.conf.values())
    assert app.conf.broker_url == ENVIRON["SFTRENEW_BROKER_URL"]  # Celery itself still connects
    table = app.conf.table(with_defaults=False, censored=True)
    assert not _shown(repr(table)), table
    assert table["broker_url"] == "redis://:********@redis.example:6379/0"
    assert table["result_backend"] == "redis://default:********@redis.example:6379/1"
    # What a worker answers to `celery inspect conf`, and so what Flower's worker page shows.
    for with_defaults in (False, True):
        reported = control.conf(SimpleNamespace(app=app), with_defaults=with_defaults)
        assert not _shown(json.dumps(reported, default=repr)), reported


def test_each_role_gets_only_its_secrets() -> None:
    environ = {
        **ENVIRON,
        "SFTRENEW_INVENTORY": "/etc/sftrenew/inventory.yaml",
        "SFTRENEW_SSH_CONNECT_TIMEOUT": "3",
        "SFTRENEW_FLEET_ADMIN": "fleet-pw",  # a credential variable, named by no setting
        "DC2_JUMP": "jump-pw",  # a credential variable the inventory names
        "FLOWER_BASIC_AUTH": f"sftrenew:{FLOWER_PW}",
        "PATH": "/usr/bin",
    }
    devices = frozenset({"DC2_JUMP"})
    worker = environment("worker", environ, devices=devices)
    flower = environment("flower", environ, devices=devices)
    command = environment("command", environ, devices=devices)
    web = environment("web", {**environ, "SFTRENEW_WEB_SECRET": "k" * 32}, devices=devices)
    everywhere = {"SFTRENEW_SSH_CONNECT_TIMEOUT", "PATH"}
    assert set(worker) == everywhere | {
        "SFTRENEW_BROKER_URL",
        "SFTRENEW_RESULT_BACKEND",
        "SFTRENEW_DATABASE_URL",
        "SFTRENEW_ARTIFACT_KEY",
        "SFTRENEW_INVENTORY",
        "SFTRENEW_FLEET_ADMIN",
        "DC2_JUMP",
    }
    assert command == worker
    assert set(web) == {*worker, "SFTRENEW_WEB_SECRET"}
    assert "SFTRENEW_WEB_SECRET" not in worker and "SFTRENEW_WEB_SECRET" not in flower
    assert set(flower) == everywhere | {
        "SFTRENEW_BROKER_URL",
        "SFTRENEW_RESULT_BACKEND",
        "SFTRENEW_FLOWER_PASSWORD",
        "FLOWER_BASIC_AUTH",
    }
    assert all(environ[name] == value for name, value in {**worker, **flower}.items())


SECRETS_DIR = "/run/secrets/"


def _compose_secrets(service: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The secret settings a compose service gets (directly, or filled from a file) and the Docker secrets
    it mounts; every file variable must point at a secret the service mounts."""
    environment: dict[str, str] = service.get("environment", {})
    mounted = set(service.get("secrets", []))
    settings = set(environment) & SECRET_VARIABLES
    for name in settings:  # only a URL without its password, which a password file fills
        assert any(name in urls for urls in PASSWORD_FILES.values()), name
        assert "$" not in environment[name], name
        with_password(environment[name], "x")  # ValueError if the URL holds a password already
    for name, value in environment.items():
        if name in SECRET_FILE_VARIABLES:
            assert value.startswith(SECRETS_DIR) and value.removeprefix(SECRETS_DIR) in mounted, (name, value)
            settings |= SECRET_FILE_VARIABLES[name]
    used = {v.removeprefix(SECRETS_DIR) for n, v in environment.items() if n in SECRET_FILE_VARIABLES}
    assert used == mounted, f"mounted but not read: {mounted - used}"
    return settings, mounted


def test_compose_gives_each_service_the_secrets_of_its_role() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    roles: dict[str, Role] = {"worker": "worker", "scheduler": "worker", "flower": "flower", "web": "web"}
    for name, service in services.items():
        if not service.get("image", "").startswith("sftrenew:"):
            continue
        assert "env_file" not in service or all(
            isinstance(f, dict) and f["path"] == "devices.env" for f in service["env_file"]
        ), f"{name} gets a whole env file"
        # Secrets come from Docker secrets only: never a value (or an interpolation) in the environment.
        environment = service.get("environment", {})
        settings, _ = _compose_secrets(service)
        if name in roles:
            # The page's users come from a file of its own (SFTRENEW_WEB_USERS_FILE, mode-checked), and its
            # session key is derived from the artifact key: compose gives it neither secret.
            unused = {"SFTRENEW_WEB_USERS", "SFTRENEW_WEB_SECRET"}
            assert settings == ROLE_VARIABLES[roles[name]] & SECRET_VARIABLES - unused, name
            assert ("env_file" in service) == (roles[name] in DEVICE_ROLES), name
            assert set(environment) <= ROLE_VARIABLES[roles[name]] | SETTINGS_VARIABLES - RESTRICTED, name
    assert _compose_secrets(services["migrate"]) == ({"SFTRENEW_DATABASE_URL"}, {"postgres_password"})
    # The lab's demo: its own database, artifact key and Flower password; Redis's password only.
    assert _compose_secrets(services["demo"]) == (
        {"SFTRENEW_BROKER_URL", "SFTRENEW_RESULT_BACKEND"},
        {"redis_password"},
    )
    assert services["postgres"]["secrets"] == ["postgres_password"]
    assert services["redis"]["secrets"] == ["redis_password"]
    declared = {name: entry["file"] for name, entry in compose["secrets"].items()}
    assert all(path.startswith("./secrets/") for path in declared.values()), declared
    mounted = {s for service in services.values() for s in service.get("secrets", [])}
    assert mounted == set(declared)


# ------------------------------------------------------------------ secrets from files (Docker secrets)

#: A password with every character a URL treats specially, and a few a shell or Redis would.
AWKWARD = 'p@ss:w/rd%41#frag?q=1 &x\\y"z'


def _file(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


@pytest.mark.parametrize("variable", sorted(SECRET_VARIABLES - OWN_FILE_SETTING))
def test_every_secret_variable_reads_a_file_and_keeps_it_hidden(tmp_path: Path, variable: str) -> None:
    value = {
        "SFTRENEW_DATABASE_URL": f"postgresql://u:{PG_PW}@h/db",
        "SFTRENEW_BROKER_URL": f"redis://:{REDIS_PW}@h/0",
        "SFTRENEW_RESULT_BACKEND": f"redis://:{RESULT_PW}@h/1",
        "SFTRENEW_ARTIFACT_KEY": KEY,
        "SFTRENEW_FLOWER_PASSWORD": FLOWER_PW,
        "SFTRENEW_NOTIFY": f"json://h/?token={FLOWER_PW}",
        "SFTRENEW_WEB_SECRET": FLOWER_PW * 3,
    }[variable]
    from_file = load_settings({variable + "_FILE": _file(tmp_path, "s", value + "\n")})
    assert from_file == load_settings({variable: value})  # one trailing newline is not part of it
    assert not _shown(repr(from_file)), repr(from_file)
    two_lines = load_settings({variable + "_FILE": _file(tmp_path, "t", value + "\n\n")})
    assert two_lines != from_file  # only one newline is taken off: the value is what the file holds


def test_a_secret_and_its_file_both_set_is_refused_naming_both(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"SFTRENEW_ARTIFACT_KEY": KEY, "SFTRENEW_ARTIFACT_KEY_FILE": _file(tmp_path, "k", KEY)})
    assert "SFTRENEW_ARTIFACT_KEY and SFTRENEW_ARTIFACT_KEY_FILE" in str(refused.value)
    assert KEY not in str(refused.value)


@pytest.mark.parametrize("kind", ["missing", "directory", "not utf-8", "unreadable"])
def test_an_unreadable_secret_file_names_the_file_never_its_content(tmp_path: Path, kind: str) -> None:
    path = {
        "missing": str(tmp_path / "nothing-here"),
        "directory": str(tmp_path),
        "not utf-8": _file(tmp_path, "latin1", FLOWER_PW.encode() + b"\xff\xfe"),
        "unreadable": _file(tmp_path, "locked", FLOWER_PW),
    }[kind]
    if kind == "unreadable":
        Path(path).chmod(0)
        if os.access(path, os.R_OK):  # root reads anything: make it a path through a file instead
            path = _file(tmp_path, "plain", FLOWER_PW) + "/below-a-file"
    with pytest.raises(ConfigError) as refused:
        load_settings({"SFTRENEW_FLOWER_PASSWORD_FILE": path})
    assert f"SFTRENEW_FLOWER_PASSWORD_FILE: {path}" in str(refused.value) or (
        "SFTRENEW_FLOWER_PASSWORD_FILE: cannot read " + path in str(refused.value)
    ), refused.value
    assert FLOWER_PW not in str(refused.value)


def test_awkward_passwords_from_files_round_trip_through_every_client(tmp_path: Path) -> None:
    """What the database and Redis clients read back from the URL is exactly the password in the file, for
    any password (percent-encoded into the URL), and the URL still shows with it masked."""
    settings = load_settings(
        {
            "SFTRENEW_DATABASE_URL": "postgresql+psycopg://sftrenew@postgres:5432/sftrenew",
            "SFTRENEW_DATABASE_PASSWORD_FILE": _file(tmp_path, "pg", AWKWARD + "\n"),
            "SFTRENEW_BROKER_URL": "redis://redis:6379/0",
            "SFTRENEW_RESULT_BACKEND": "redis://default@redis:6379/1",
            "SFTRENEW_REDIS_PASSWORD_FILE": _file(tmp_path, "redis", AWKWARD),
        }
    )
    database = make_url(settings.database_url.get_secret_value())
    assert (database.username, database.password, database.host, database.database) == (
        "sftrenew",
        AWKWARD,
        "postgres",
        "sftrenew",
    )
    for url, db, user in (
        (settings.celery.broker_url, 0, None),
        (settings.celery.result_backend, 1, "default"),
    ):
        pool = redis.Redis.from_url(url.get_secret_value()).connection_pool
        assert pool.connection_kwargs["password"] == AWKWARD and pool.connection_kwargs["db"] == db
        assert pool.connection_kwargs.get("username") == user
        parts = url_to_parts(url.get_secret_value())  # what Celery's broker and result backend read
        assert (parts.password, parts.hostname, parts.port) == (AWKWARD, "redis", 6379)
    for text in (repr(settings), str(settings.model_dump())):
        assert AWKWARD not in text and quote(AWKWARD, safe="") not in text
    assert "postgres:5432/sftrenew" in repr(settings)


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"SFTRENEW_DATABASE_URL": "sqlite:///x.db"}, "names no host"),
        ({"SFTRENEW_DATABASE_URL": f"postgresql://u:{PG_PW}@h/db"}, "has a password already"),
        ({}, "is set, but not SFTRENEW_DATABASE_URL"),
    ],
)
def test_a_password_file_needs_a_url_to_go_into(
    tmp_path: Path, environ: dict[str, str], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem) as refused:
        load_settings({**environ, "SFTRENEW_DATABASE_PASSWORD_FILE": _file(tmp_path, "pg", "secret-pg")})
    assert "secret-pg" not in str(refused.value) and PG_PW not in str(refused.value)
    with pytest.raises(ConfigError, match="is empty"):
        load_settings(
            {"SFTRENEW_BROKER_URL": "redis://h/0", "SFTRENEW_REDIS_PASSWORD_FILE": _file(tmp_path, "e", "\n")}
        )


def test_a_file_variable_goes_where_the_secrets_it_fills_go() -> None:
    environ = dict.fromkeys(SECRET_FILE_VARIABLES, "/run/secrets/x") | {"PATH": "/usr/bin"}
    worker, flower = environment("worker", environ), environment("flower", environ)
    assert set(worker) == {"PATH"} | {
        f"SFTRENEW_{name}_FILE"
        for name in (
            "DATABASE_URL",
            "BROKER_URL",
            "RESULT_BACKEND",
            "ARTIFACT_KEY",
            "NOTIFY",
            "DATABASE_PASSWORD",
        )
    } | {"SFTRENEW_REDIS_PASSWORD_FILE"}
    assert set(flower) == {
        "PATH",
        "SFTRENEW_BROKER_URL_FILE",
        "SFTRENEW_RESULT_BACKEND_FILE",
        "SFTRENEW_FLOWER_PASSWORD_FILE",
        "SFTRENEW_REDIS_PASSWORD_FILE",
    }
    assert environment("command", environ) == worker


def test_the_devices_variables_are_those_the_inventory_names(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "version: 1\nknown_hosts: known_hosts\ncredentials:\n"
        "  admin: {username: admin, password: {env: DC1_ADMIN}}\n"
        "  other: {username: op, password: {env: DC2_ADMIN}}\n"
        "pairs:\n  dc1:\n"
        "    primary: {name: fmc-a, host: 127.0.0.1, credential: admin}\n"
        "    secondary: {name: fmc-b, host: 127.0.0.2, credential: admin}\n"
        "    ftds: []\n"
    )
    environ = {
        "SFTRENEW_INVENTORY": str(inventory),
        "DC1_ADMIN": "pw",
        "DC2_ADMIN": "pw2",
        "PATH": "/usr/bin",
    }
    assert environment_for("worker", environ) == environ
    assert environment_for("flower", environ) == {"PATH": "/usr/bin"}
    inventory.write_text("not: [an inventory")  # the worker says what is wrong; the environment is still made
    assert environment_for("worker", environ) == environ
