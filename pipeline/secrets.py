"""The thin I/O edge around the inventory: reading it from disk, and turning credential names into passwords.

Passwords come from environment variables or from a secrets file that only its owner may read (mode 0600);
the inventory only names them (see docs/inventory.md). Values are pydantic `SecretStr`, so a `repr` or a log
line shows `**********`, and no message raised here ever contains one.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import yaml
from pydantic import SecretStr

from pipeline.errors import ConfigError
from pipeline.inventory import Inventory, SecretRef
from pipeline.inventory_loader import load_inventory

#: Permission bits a secrets file may have: read and write for its owner, nothing for anyone else.
ALLOWED_SECRETS_MODE = 0o600
REDACTED = "**********"


def read_inventory(path: Path) -> Inventory:
    """Read and validate the inventory at `path`, with `known_hosts`/`secrets_file` resolved to its folder.

    Raises `ConfigError` when the file cannot be read and `InventoryError` when its content is invalid.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read the inventory {path}: {reason}; check the path") from None
    return load_inventory(text, source=str(path)).resolve(path.absolute().parent)


def load_secrets_file(path: Path) -> Mapping[str, SecretStr]:
    """The `name: value` mapping of a secrets file, checked to be private (mode 0600 or stricter).

    Raises `ConfigError` naming the file and the fix when it is missing, readable by group or others, not a
    YAML mapping of text to text; the message never contains a value, nor the text of a line.
    """
    return _parse_secrets(read_private_file(path, what="secrets file", named_by="secrets_file"), path)


def read_private_file(path: Path, *, what: str, named_by: str) -> bytes:
    """The bytes of a file only its owner may read (mode 0600 or stricter, checked on the open file, so no
    swap between check and read); ConfigError naming `what`, the file and the fix (`named_by`: the setting
    that names it) when it is readable by others or cannot be read. Used for every file of secrets."""
    try:
        with path.open("rb") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            if mode & ~ALLOWED_SECRETS_MODE:
                raise ConfigError(
                    f"{what} {path} has mode {mode:04o}, but only its owner may read it (0600 or "
                    f"stricter); run: chmod 600 {path}"
                )
            return handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc.strerror}; check {named_by}") from None


def _parse_secrets(raw: bytes, path: Path) -> Mapping[str, SecretStr]:
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        # Not str(exc): PyYAML quotes the offending line, and that line may hold a password.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"secrets file {path} is not valid YAML{where}; write one 'name: value' per line"
        ) from None
    if data is None:
        return MappingProxyType({})
    if not isinstance(data, dict):
        raise ConfigError(f"secrets file {path} must be a mapping of 'name: value' lines")
    bad = sorted(
        str(key) for key, value in data.items() if not (isinstance(key, str) and isinstance(value, str))
    )
    if bad:
        raise ConfigError(
            f"secrets file {path}: the value of {', '.join(bad)} is not text; quote each value (and name)"
        )
    return MappingProxyType({key: SecretStr(value) for key, value in data.items()})


class SecretResolver:
    """Resolves a credential's password from the environment or the inventory's secrets file.

    The secrets file is read on first use only, so an inventory that uses environment variables alone
    needs no file, and a bad file is reported when a password from it is asked for. `environ` is passed in
    (usually `os.environ`) so callers and tests decide what the process sees.
    """

    def __init__(self, inventory: Inventory, environ: Mapping[str, str]) -> None:
        self._inventory = inventory
        self._environ = environ
        self._secrets: Mapping[str, SecretStr] | None = None
        self._resolved: dict[str, SecretStr] = {}

    def __repr__(self) -> str:
        return f"SecretResolver(inventory={self._inventory.source!r}, resolved={sorted(self._resolved)})"

    def password(self, credential_name: str) -> SecretStr:
        """The password of `credential_name`; `ConfigError` naming the variable or key when it is missing."""
        credential = self._inventory.credentials.get(credential_name)
        if credential is None:
            known = ", ".join(sorted(self._inventory.credentials)) or "none"
            raise ConfigError(
                f"{self._inventory.source}: no credential named '{credential_name}' (known: {known}); "
                "add it under credentials"
            )
        where = f"credentials.{credential_name}.password in {self._inventory.source}"
        value = self._lookup(credential.password, where)
        self._resolved[credential_name] = value
        return value

    def redact(self, text: str) -> str:
        """`text` with every password resolved so far replaced by `**********`: for output put in errors."""
        for secret in self._resolved.values():
            plain = secret.get_secret_value()
            if plain:
                text = text.replace(plain, REDACTED)
        return text

    def _lookup(self, ref: SecretRef, where: str) -> SecretStr:
        if ref.kind == "env":
            value = self._environ.get(ref.key, "")
            if not value:
                raise ConfigError(
                    f"environment variable {ref.key} is not set or empty (referenced by {where}); "
                    f"export {ref.key} in the environment of the CLI and the workers"
                )
            return SecretStr(value)
        secrets = self._load_secrets(where)
        if ref.key not in secrets:
            path = self._inventory.secrets_file
            raise ConfigError(
                f"secret '{ref.key}' is not in the secrets file {path} (referenced by {where}); "
                f"add a line '{ref.key}: <password>' to that file"
            )
        return secrets[ref.key]

    def _load_secrets(self, where: str) -> Mapping[str, SecretStr]:
        if self._secrets is None:
            if self._inventory.secrets_file is None:
                raise ConfigError(
                    f"{where} refers to the secrets file, but the inventory names none; add secrets_file"
                )
            self._secrets = load_secrets_file(Path(self._inventory.secrets_file))
        return self._secrets
