"""The inventory: which FMC pairs, FTDs and jump servers a renewal touches, and how to log in to them.

Frozen values, and the lookups every later layer makes on them (a pair by name, an FTD of a pair), which fail
with an `InventoryError` that lists the known names. `pipeline.inventory_loader.load_inventory` builds them
from the file's text; `known_hosts` and `secrets_file` stay raw strings until the I/O edge
(`pipeline.secrets.read_inventory`) calls `Inventory.resolve`. Pure: nothing here opens a file or reads the
environment. The format is described in docs/inventory.md.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from pipeline.errors import InventoryError, InventoryProblem

DEFAULT_PORT = 22


@dataclass(frozen=True)
class SecretRef:
    """Where a password lives: a key of the secrets file or an environment variable; never the value."""

    kind: Literal["secret", "env"]
    key: str


@dataclass(frozen=True)
class Credential:
    name: str
    username: str
    password: SecretRef


@dataclass(frozen=True, kw_only=True)
class JumpServer:
    name: str
    host: str
    port: int = DEFAULT_PORT
    credential: str


@dataclass(frozen=True, kw_only=True)
class Fmc:
    name: str
    host: str
    port: int = DEFAULT_PORT
    credential: str
    uuid: str | None = None
    role: Literal["primary", "secondary"]


@dataclass(frozen=True, kw_only=True)
class Ftd:
    """A managed firewall; `jump` names its fallback route, `site` the worker queue near it."""

    name: str
    host: str
    port: int = DEFAULT_PORT
    credential: str
    jump: str | None = None
    site: str | None = None
    uuid: str | None = None


@dataclass(frozen=True)
class FmcPair:
    """An FMC HA pair and the FTDs it manages; renewals run on the primary, then on the secondary."""

    name: str
    primary: Fmc
    secondary: Fmc
    ftds: tuple[Ftd, ...] = ()

    @property
    def fmcs(self) -> tuple[Fmc, Fmc]:
        """Both FMCs in the order a renewal visits them."""
        return (self.primary, self.secondary)

    def ftd(self, name: str) -> Ftd:
        """The FTD called `name`; an `InventoryError` listing this pair's FTDs when there is none."""
        for ftd in self.ftds:
            if ftd.name == name:
                return ftd
        known = [ftd.name for ftd in self.ftds]
        raise _lookup_error("", f"pairs.{self.name}.ftds", f"no FTD named '{name}' in this pair", known)


@dataclass(frozen=True)
class Inventory:
    """A validated inventory; `source` is the file it came from, used in every later error message."""

    source: str
    known_hosts: str
    secrets_file: str | None
    credentials: Mapping[str, Credential]
    jump_servers: Mapping[str, JumpServer]
    pairs: Mapping[str, FmcPair]

    def __post_init__(self) -> None:
        # Read-only views, so a frozen Inventory cannot be changed through its mappings either.
        for name in ("credentials", "jump_servers", "pairs"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def pair(self, name: str) -> FmcPair:
        """The pair called `name`; an `InventoryError` listing the known pairs when there is none."""
        if name in self.pairs:
            return self.pairs[name]
        raise _lookup_error(self.source, "pairs", f"no FMC pair named '{name}'", list(self.pairs))

    def resolve(self, base_dir: Path) -> Inventory:
        """A copy with relative `known_hosts`/`secrets_file` joined to `base_dir` (pure path arithmetic)."""
        secrets_file = None if self.secrets_file is None else str(resolve_path(self.secrets_file, base_dir))
        return replace(
            self, known_hosts=str(resolve_path(self.known_hosts, base_dir)), secrets_file=secrets_file
        )


def resolve_path(raw: str, base_dir: Path) -> Path:
    """`raw` when absolute, else `base_dir / raw`; touches no file system (no `~`, no symlinks)."""
    path = Path(raw)
    return path if path.is_absolute() else base_dir / path


def _lookup_error(source: str, path: str, what: str, known: Collection[str]) -> InventoryError:
    names = ", ".join(sorted(known)) or "none"
    return InventoryError([InventoryProblem(source, None, path, f"{what}; known: {names}")])
