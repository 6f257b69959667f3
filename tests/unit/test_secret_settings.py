"""Secrets in their place (issue 11): a settings object never prints a secret, Celery's configuration holds
none, and each role's environment holds only the secrets that role uses."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from celery.worker import control

from pipeline.errors import ConfigError
from pipeline.settings import SECRET_VARIABLES, SETTINGS_VARIABLES, SecretUrl, load_settings, redact_url
from sftrenew.environments import DEVICE_ROLES, ROLE_VARIABLES, Role, environment, environment_for
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


def test_compose_gives_each_service_the_secrets_of_its_role() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    roles: dict[str, Role] = {"worker": "worker", "scheduler": "worker", "flower": "flower", "web": "web"}
    for name, service in compose["services"].items():
        if service.get("image") != "sftrenew:latest":
            continue
        assert "env_file" not in service or all(
            isinstance(f, dict) and f["path"] == "devices.env" for f in service["env_file"]
        ), f"{name} gets a whole env file"
        secrets = set(service.get("environment", {})) & SECRET_VARIABLES
        if name in roles:
            # The page's users come from a file in compose, not from SFTRENEW_WEB_USERS.
            allowed = ROLE_VARIABLES[roles[name]] & SECRET_VARIABLES - {"SFTRENEW_WEB_USERS"}
            assert secrets == allowed, name
            assert ("env_file" in service) == (roles[name] in DEVICE_ROLES), name
    assert set(compose["services"]["migrate"]["environment"]) == {"SFTRENEW_DATABASE_URL"}
    assert "SFTRENEW_FLOWER_PASSWORD" not in compose["services"]["demo"]["environment"]


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
