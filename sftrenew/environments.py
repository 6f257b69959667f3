"""Which process gets which secret: one rule for every process sftrenew starts (the demo, the tests' renewal
environment), and the one compose.yaml spells out per service.

A process gets the environment it is started from, less the secrets it does not use:

| role      | the secrets it gets                                                                        |
|-----------|--------------------------------------------------------------------------------------------|
| `worker`  | the devices' passwords, the database, the broker and result backend, the artifact key, the |
|           | notification URLs (`SFTRENEW_NOTIFY`)                                                      |
| `flower`  | its own password, the broker and result backend (the same Redis)                           |
| `command` | an operator's command (`enqueue`, `status`, `retry`, `plan`, `check`): as a worker         |
| `web`     | the renewal page: as a command (its buttons run the commands' code), plus its users and key |

The devices' passwords are the variables the inventory names (`{env: NAME}`); any other `SFTRENEW_*`
variable that is no setting may be one too, so it goes only where device passwords go. A variable naming a
file that holds a secret (`SFTRENEW_<NAME>_FILE`, `SFTRENEW_REDIS_PASSWORD_FILE`...) goes only where the
secrets it fills go (`pipeline.settings.SECRET_FILE_VARIABLES`). Flower's own options
(`FLOWER_*`, such as `FLOWER_BASIC_AUTH`) go only to Flower, and the inventory's path does not go to Flower,
which reads no inventory. Everything else (`PATH`, `HOME`, the non-secret settings) goes everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pipeline.errors import ConfigError, InventoryError
from pipeline.secrets import read_inventory
from pipeline.settings import ENV_PREFIX, SECRET_FILE_VARIABLES, SECRET_VARIABLES, SETTINGS_VARIABLES

Role = Literal["worker", "flower", "command", "web"]

INVENTORY = ENV_PREFIX + "INVENTORY"
#: Variables only some roles get: the secret settings, the files that hold them, and the inventory's path.
RESTRICTED = SECRET_VARIABLES | frozenset(SECRET_FILE_VARIABLES) | {INVENTORY}
_BACKENDS = frozenset(ENV_PREFIX + name for name in ("DATABASE_URL", "BROKER_URL", "RESULT_BACKEND"))
_REDIS = frozenset(ENV_PREFIX + name for name in ("BROKER_URL", "RESULT_BACKEND"))


def _with_files(variables: frozenset[str]) -> frozenset[str]:
    """`variables` and every secret file variable that fills only secrets among them."""
    return variables | {name for name, fills in SECRET_FILE_VARIABLES.items() if fills <= variables}


#: Per role, which of the restricted variables it gets.
ROLE_VARIABLES: Mapping[Role, frozenset[str]] = {
    "worker": _with_files(_BACKENDS | {ENV_PREFIX + "ARTIFACT_KEY", INVENTORY, ENV_PREFIX + "NOTIFY"}),
    "flower": _with_files(_REDIS | {ENV_PREFIX + "FLOWER_PASSWORD"}),
    "command": _with_files(_BACKENDS | {ENV_PREFIX + "ARTIFACT_KEY", INVENTORY, ENV_PREFIX + "NOTIFY"}),
    "web": _with_files(
        _BACKENDS
        | {ENV_PREFIX + "ARTIFACT_KEY", INVENTORY, ENV_PREFIX + "WEB_USERS", ENV_PREFIX + "WEB_SECRET"}
    ),
}
#: The roles that log in to devices, and so get the devices' passwords (the page's approve plans again).
DEVICE_ROLES: frozenset[Role] = frozenset({"worker", "command", "web"})


def device_variables(inventory: Path | None) -> frozenset[str]:
    """The environment variables `inventory` names for passwords (`{env: NAME}`); none without a readable
    one (the worker or command started then says what is wrong with it; Flower does not read it)."""
    if inventory is None:
        return frozenset()
    try:
        credentials = read_inventory(inventory).credentials.values()
    except (ConfigError, InventoryError):
        return frozenset()
    return frozenset(c.password.key for c in credentials if c.password.kind == "env")


def environment(
    role: Role, environ: Mapping[str, str], *, devices: frozenset[str] = frozenset()
) -> dict[str, str]:
    """`environ` less what `role` must not hold; `devices` are the variables holding device passwords."""
    allowed = ROLE_VARIABLES[role]
    return {name: value for name, value in environ.items() if _gets(role, allowed, name, devices)}


def _gets(role: Role, allowed: frozenset[str], name: str, devices: frozenset[str]) -> bool:
    if name in RESTRICTED:
        return name in allowed
    if name in devices or (name.startswith(ENV_PREFIX) and name not in SETTINGS_VARIABLES):
        return role in DEVICE_ROLES
    if name.startswith("FLOWER_"):
        return role == "flower"
    return True


def environment_for(role: Role, environ: Mapping[str, str]) -> dict[str, str]:
    """`environment` with the device variables of the inventory `environ` names (SFTRENEW_INVENTORY)."""
    path = environ.get(INVENTORY)
    return environment(role, environ, devices=device_variables(Path(path) if path else None))
