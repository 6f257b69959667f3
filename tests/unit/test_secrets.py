"""The I/O edge: real inventory and secrets files in a temp dir, real file modes, no secret in any message."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pipeline.errors import CommandFailedError, ConfigError, InventoryError
from pipeline.secrets import SecretResolver, load_secrets_file, read_inventory

DATA = Path(__file__).parent / "data" / "inventory"
FLEET_PASSWORD = "Fleet-Pw-7c1e"  # throw-away values: each must never show up in a message or repr
JUMP_PASSWORD = "Jump-Pw-33ad"
OTHER_PASSWORD = "Other-Pw-90b2"
SECRETS_YAML = f"fleet-admin: {FLEET_PASSWORD}\nspare: '{OTHER_PASSWORD}'\n"


def _write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    """The documented example inventory next to its 0600 secrets file."""
    shutil.copy(DATA / "good_lab.yaml", tmp_path / "inventory.yaml")
    _write(tmp_path / "secrets.yaml", SECRETS_YAML, 0o600)
    return tmp_path


def _resolver(fleet_dir: Path, environ: dict[str, str] | None = None) -> SecretResolver:
    inventory = read_inventory(fleet_dir / "inventory.yaml")
    return SecretResolver(
        inventory, {"SFTRENEW_JUMP_PASSWORD": JUMP_PASSWORD} if environ is None else environ
    )


def _assert_no_secret(text: str) -> None:
    for value in (FLEET_PASSWORD, JUMP_PASSWORD, OTHER_PASSWORD):
        assert value not in text


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_secrets_file_is_accepted(tmp_path: Path, mode: int) -> None:
    path = _write(tmp_path / "secrets.yaml", SECRETS_YAML, mode)

    secrets = load_secrets_file(path)

    assert sorted(secrets) == ["fleet-admin", "spare"]
    assert secrets["fleet-admin"].get_secret_value() == FLEET_PASSWORD
    _assert_no_secret(repr(secrets))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700])
def test_a_secrets_file_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = _write(tmp_path / "secrets.yaml", SECRETS_YAML, mode)

    with pytest.raises(ConfigError) as caught:
        load_secrets_file(path)

    message = str(caught.value)
    assert f"secrets file {path} has mode {mode:04o}" in message
    assert message.endswith(f"run: chmod 600 {path}")
    _assert_no_secret(message)


def test_the_fix_in_the_message_works(tmp_path: Path) -> None:
    path = _write(tmp_path / "secrets.yaml", SECRETS_YAML, 0o644)
    with pytest.raises(ConfigError):
        load_secrets_file(path)

    os.chmod(path, 0o600)  # what the message says to run

    assert load_secrets_file(path)["spare"].get_secret_value() == OTHER_PASSWORD


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"- {FLEET_PASSWORD}\n", "must be a mapping of 'name: value' lines"),
        (f"{FLEET_PASSWORD}\n", "must be a mapping of 'name: value' lines"),
        (
            f"fleet-admin: [{FLEET_PASSWORD}]\nok: fine\nnumber: 1234\n",
            "the value of fleet-admin, number is not text",
        ),
        (f"fleet-admin: '{FLEET_PASSWORD}\nspare: x\n", "is not valid YAML at line 3"),
        (f"fleet-admin: {FLEET_PASSWORD}\n\tspare: {OTHER_PASSWORD}\n", "is not valid YAML at line 2"),
    ],
)
def test_a_malformed_secrets_file_is_refused_without_its_values(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = _write(tmp_path / "secrets.yaml", text, 0o600)

    with pytest.raises(ConfigError) as caught:
        load_secrets_file(path)

    assert expected in str(caught.value)
    assert str(path) in str(caught.value)
    _assert_no_secret(str(caught.value))
    _assert_no_secret(repr(caught.value))


def test_an_empty_secrets_file_holds_no_secrets(tmp_path: Path) -> None:
    assert dict(load_secrets_file(_write(tmp_path / "secrets.yaml", "# none yet\n", 0o600))) == {}


def test_a_missing_secrets_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read the secrets file .*nope\.yaml: No such file"):
        load_secrets_file(tmp_path / "nope.yaml")


def test_read_inventory_resolves_paths_against_the_inventory_folder(fleet_dir: Path) -> None:
    inventory = read_inventory(fleet_dir / "inventory.yaml")

    assert inventory.source == str(fleet_dir / "inventory.yaml")
    assert inventory.known_hosts == str(fleet_dir / "known_hosts")
    assert inventory.secrets_file == str(fleet_dir / "secrets.yaml")


def test_read_inventory_reports_an_unreadable_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read the inventory .*missing\.yaml: No such file"):
        read_inventory(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    shutil.copy(DATA / "bad_no_secondary.yaml", bad)
    with pytest.raises(InventoryError, match=rf"^{bad}:7: pairs\.lab\.secondary: missing; "):
        read_inventory(bad)


def test_env_and_secret_references_are_resolved(fleet_dir: Path) -> None:
    resolver = _resolver(fleet_dir)

    assert resolver.password("jump").get_secret_value() == JUMP_PASSWORD
    assert resolver.password("fleet-admin").get_secret_value() == FLEET_PASSWORD
    _assert_no_secret(repr(resolver))
    _assert_no_secret(repr(resolver.password("fleet-admin")))
    _assert_no_secret(str(resolver.password("fleet-admin")))


def test_the_secrets_file_is_read_only_when_a_secret_is_needed(fleet_dir: Path) -> None:
    resolver = _resolver(fleet_dir)
    (fleet_dir / "secrets.yaml").chmod(0o644)

    assert resolver.password("jump").get_secret_value() == JUMP_PASSWORD
    with pytest.raises(ConfigError, match=r"chmod 600"):
        resolver.password("fleet-admin")


def test_a_missing_environment_variable_is_named_with_its_reference(fleet_dir: Path) -> None:
    resolver = _resolver(fleet_dir, environ={"SFTRENEW_JUMP_PASSWORD": ""})

    with pytest.raises(ConfigError) as caught:
        resolver.password("jump")

    assert str(caught.value) == (
        "environment variable SFTRENEW_JUMP_PASSWORD is not set or empty (referenced by "
        f"credentials.jump.password in {fleet_dir / 'inventory.yaml'}); export SFTRENEW_JUMP_PASSWORD in the "
        "environment of the CLI and the workers"
    )


def test_a_missing_secret_key_is_named_with_its_reference(fleet_dir: Path) -> None:
    _write(fleet_dir / "secrets.yaml", f"spare: {OTHER_PASSWORD}\n", 0o600)
    resolver = _resolver(fleet_dir)

    with pytest.raises(ConfigError) as caught:
        resolver.password("fleet-admin")

    assert str(caught.value) == (
        f"secret 'fleet-admin' is not in the secrets file {fleet_dir / 'secrets.yaml'} (referenced by "
        f"credentials.fleet-admin.password in {fleet_dir / 'inventory.yaml'}); add a line "
        "'fleet-admin: <password>' to that file"
    )
    _assert_no_secret(str(caught.value))


def test_an_unknown_credential_lists_the_known_ones(fleet_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"no credential named 'root' \(known: fleet-admin, jump\)"):
        _resolver(fleet_dir).password("root")


def test_redact_strips_resolved_passwords_from_device_output(fleet_dir: Path) -> None:
    resolver = _resolver(fleet_dir)
    resolver.password("fleet-admin")
    output = f"[sudo] password for admin: {FLEET_PASSWORD}\nsudo: 1 incorrect password attempt\n"

    error = CommandFailedError("ftd-001", "direct", "sudo su", 1, resolver.redact(output))

    _assert_no_secret(str(error))
    _assert_no_secret(repr(error))
    assert "password for admin: **********" in str(error)


def test_the_mode_error_shown_in_the_docs_is_what_the_code_says(tmp_path: Path) -> None:
    path = _write(tmp_path / "secrets.yaml", SECRETS_YAML, 0o644)
    docs = (Path(__file__).parents[2] / "docs" / "inventory.md").read_text(encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_secrets_file(path)

    assert str(caught.value).replace(str(path), "/srv/sftrenew/secrets.yaml") in docs.splitlines()
