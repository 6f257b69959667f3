"""Reads an inventory file's text into `pipeline.inventory` values, by the rules of its format (version 1).

Pure: `load_inventory` takes the text and returns frozen values, or raises one `InventoryError` that lists
every problem with its file, line, field path and fix, found in one pass. Nothing here opens a file or reads
the environment (`pipeline.secrets.read_inventory` does). The format is described in docs/inventory.md.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

import yaml

from pipeline.errors import InventoryError, InventoryProblem
from pipeline.inventory import (
    DEFAULT_PORT,
    Credential,
    Fmc,
    FmcPair,
    Ftd,
    Inventory,
    JumpServer,
    SecretRef,
)
from pipeline.yamlcheck import NULL_TAG, Checker, integer, kind, syntax_problem

VERSION = 1


def load_inventory(text: str, *, source: str) -> Inventory:
    """Parse and validate an inventory (format version 1); `source` names the file in error messages.

    Raises `InventoryError` with every problem found (file, line, field path, fix). No secret value can
    appear in a message: inline passwords are refused without being quoted, and YAML syntax errors are
    reported without the text of the offending line.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise InventoryError([syntax_problem(source, exc)]) from None
    if root is None:
        empty = "the file is empty; write an inventory (see docs/inventory.md)"
        raise InventoryError([InventoryProblem(source, 1, "(top level)", empty)])
    checker = _Checker(source, missing_fix=_MISSING_FIX)
    inventory = _document(checker, root)
    if checker.problems:
        raise InventoryError(sorted(checker.problems, key=lambda p: p.line or 0))
    return inventory


# ---------------------------------------------------------------- building values from the YAML tree
# Builders never stop early: an invalid or absent field yields a placeholder ("" or 0) and a recorded
# problem, and `load_inventory` raises when any was recorded, so one pass reports everything.

_INLINE = "{secret: NAME} (a key in secrets_file) or {env: VARIABLE}"
_DEVICE_FIELDS = ("name", "host", "credential")
_NO_REF = SecretRef("env", "")


@dataclass(frozen=True)
class _Refs:
    """Names other entries may refer to: the keys as written, even when an entry itself is invalid."""

    credentials: frozenset[str]
    jumps: frozenset[str]
    has_secrets_file: bool


def _document(c: _Checker, root: yaml.Node) -> Inventory:
    top = c.fields(
        root,
        "",
        required=("version", "known_hosts", "credentials", "pairs"),
        optional=("secrets_file", "jump_servers"),
    )
    c.version(top.get("version"), "version")
    secrets_file = c.text(top["secrets_file"], "secrets_file") if "secrets_file" in top else None
    credentials = c.mapping(top.get("credentials"), "credentials", nonempty=True)
    jumps = c.mapping(top.get("jump_servers"), "jump_servers")
    refs = _Refs(frozenset(credentials), frozenset(jumps), has_secrets_file=secrets_file is not None)
    return Inventory(
        source=c.source,
        known_hosts=c.text(top.get("known_hosts"), "known_hosts"),
        secrets_file=secrets_file,
        credentials={n: _credential(c, k, v, f"credentials.{n}", refs) for n, (k, v) in credentials.items()},
        jump_servers={n: _jump(c, k, v, f"jump_servers.{n}", refs) for n, (k, v) in jumps.items()},
        pairs={
            n: _pair(c, k, v, f"pairs.{n}", refs)
            for n, (k, v) in c.mapping(top.get("pairs"), "pairs", nonempty=True).items()
        },
    )


def _credential(c: _Checker, key: yaml.Node, node: yaml.Node, path: str, refs: _Refs) -> Credential:
    fields = c.fields(node, path, required=("username", "password"))
    return Credential(
        name=c.text(key, path, bad_name),
        username=c.text(fields.get("username"), f"{path}.username"),
        password=_secret_ref(c, fields.get("password"), f"{path}.password", refs),
    )


def _secret_ref(c: _Checker, node: yaml.Node | None, path: str, refs: _Refs) -> SecretRef:
    # Never quote what is written here: it may be the password itself.
    if node is None:
        return _NO_REF
    if not isinstance(node, yaml.MappingNode):
        what = "no password reference" if node.tag == NULL_TAG else "inline passwords are not allowed"
        c.add(node, path, f"{what}; write {_INLINE} instead")
        return _NO_REF
    keys = [key.value for key, _ in node.value]
    if keys not in (["secret"], ["env"]):
        c.add(node, path, f"write exactly one of {_INLINE}")
        return _NO_REF
    ((_, value),) = node.value
    if keys == ["env"]:
        return SecretRef("env", c.text(value, f"{path}.env", _bad_env))
    if not refs.has_secrets_file:
        fix = "add secrets_file: <path> at the top level or use {env: VARIABLE}"
        c.add(value, f"{path}.secret", f"refers to the secrets file, but the inventory names none; {fix}")
    return SecretRef("secret", c.text(value, f"{path}.secret"))


def _endpoint(c: _Checker, fields: dict[str, yaml.Node], path: str, refs: _Refs) -> tuple[str, int, str]:
    """Host, port and credential: what every device and jump server has."""
    return (
        c.text(fields.get("host"), f"{path}.host", bad_host),
        c.port(fields.get("port"), f"{path}.port"),
        c.reference(
            fields.get("credential"),
            f"{path}.credential",
            "credential",
            refs.credentials,
            fix=_REFERENCE_FIX["credential"],
        ),
    )


def _jump(c: _Checker, key: yaml.Node, node: yaml.Node, path: str, refs: _Refs) -> JumpServer:
    name = c.device_name(key, path)
    fields = c.fields(node, path, required=("host", "credential"), optional=("port",))
    host, port, credential = _endpoint(c, fields, path, refs)
    return JumpServer(name=name, host=host, port=port, credential=credential)


def _fmc(
    c: _Checker, node: yaml.Node | None, path: str, refs: _Refs, role: Literal["primary", "secondary"]
) -> Fmc:
    fields = c.fields(node, path, required=_DEVICE_FIELDS, optional=("port", "uuid"))
    name = c.device_name(fields.get("name"), f"{path}.name")
    host, port, credential = _endpoint(c, fields, path, refs)
    uuid = c.uuid(fields["uuid"], f"{path}.uuid") if "uuid" in fields else None
    return Fmc(name=name, host=host, port=port, credential=credential, uuid=uuid, role=role)


def _ftd(c: _Checker, node: yaml.Node, path: str, refs: _Refs) -> Ftd:
    fields = c.fields(node, path, required=_DEVICE_FIELDS, optional=("port", "jump", "site", "uuid"))
    name = c.device_name(fields.get("name"), f"{path}.name")
    host, port, credential = _endpoint(c, fields, path, refs)
    jump = (
        c.reference(
            fields["jump"], f"{path}.jump", "jump server", refs.jumps, fix=_REFERENCE_FIX["jump server"]
        )
        if "jump" in fields
        else None
    )
    site = c.text(fields["site"], f"{path}.site", bad_name) if "site" in fields else None
    uuid = c.uuid(fields["uuid"], f"{path}.uuid") if "uuid" in fields else None
    return Ftd(name=name, host=host, port=port, credential=credential, jump=jump, site=site, uuid=uuid)


def _pair(c: _Checker, key: yaml.Node, node: yaml.Node, path: str, refs: _Refs) -> FmcPair:
    name = c.text(key, path, bad_name)
    fields = c.fields(node, path, required=("primary", "secondary"), optional=("ftds",))
    primary = _fmc(c, fields.get("primary"), f"{path}.primary", refs, "primary")
    secondary = _fmc(c, fields.get("secondary"), f"{path}.secondary", refs, "secondary")
    items = c.sequence(fields.get("ftds"), f"{path}.ftds")
    ftds = tuple(_ftd(c, item, f"{path}.ftds[{i}]", refs) for i, item in enumerate(items))
    return FmcPair(name=name, primary=primary, secondary=secondary, ftds=ftds)


# ---------------------------------------------------------------- the inventory's own checks

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: One label of a DNS name (RFC 1123): 1 to 63 letters, digits or '-', not starting or ending with '-'.
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_HOST_MAX = 253
_REFERENCE_FIX = {
    "credential": "define it under credentials or fix the name",
    "jump server": "define it under jump_servers or remove the field",
}
_MISSING_FIX = {
    "version": f"add 'version: {VERSION}'",
    "known_hosts": "add 'known_hosts: <file>'; host keys are always checked against it",
    "credentials": "add a credentials section (see docs/inventory.md)",
    "pairs": "add a pairs section with at least one FMC pair",
    "primary": "add primary: {name: ..., host: ..., credential: ...}",
    "secondary": "sftrenew renews an FMC HA pair (the primary, then the secondary, each with its own CA), "
    "so every pair needs both; add secondary: {name: ..., host: ..., credential: ...}",
    "credential": "add credential: <a name under credentials>",
    "name": "add name: <a device name, unique in the inventory>",
    "host": "add host: <a hostname or IP address>",
    "username": "add username: <the login name>",
    "password": f"add password: {_INLINE}",
}


def bad_name(value: str) -> str | None:
    """Why `value` cannot be a device, pair, credential or site name; None when it can."""
    if _NAME_RE.match(value):
        return None
    fix = "use letters, digits, '.', '_' and '-', starting with a letter or digit"
    return f"'{value}' is not a valid name; {fix}"


def bad_host(value: str) -> str | None:
    """A host is an IP address or a DNS name (RFC 1123): never an option for ssh (`-o...`), never a typo
    such as `999.999.1.1`."""
    if any(c.isspace() for c in value):
        return "contains spaces; give a hostname or an IP address"
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return None
    name = value.removesuffix(".")
    labels = name.split(".")
    if labels[-1].isdigit():
        return f"'{value}' is not an IP address; give a valid IPv4 or IPv6 address, or a hostname"
    if len(name) > _HOST_MAX or not all(_LABEL_RE.match(label) for label in labels):
        fix = "letters, digits and '-' in dot-separated labels, none starting or ending with '-'"
        return f"'{value}' is not a hostname or an IP address; a hostname is {fix}"
    return None


def bad_uuid(value: str) -> str | None:
    """Why `value` is not a UUID as the inventory writes it (lower-case 8-4-4-4-12); None when it is."""
    if _UUID_RE.match(value):
        return None
    fix = "write it in lower case" if _UUID_RE.match(value.lower()) else "use the 8-4-4-4-12 hex form"
    return f"not a lower-case UUID; {fix}, or remove the field"


def _bad_env(value: str) -> str | None:
    return None if _ENV_RE.match(value) else "not an environment variable name; use letters, digits and '_'"


class _Checker(Checker):
    """`yamlcheck.Checker` plus the inventory's own values: device names, UUIDs, ports and the version."""

    def device_name(self, node: yaml.Node | None, path: str) -> str:
        value = self.text(node, path, bad_name)
        if node is not None and value:
            self.unique("device name", value, node, path, scope="FMCs, FTDs and jump servers")
        return value

    def uuid(self, node: yaml.Node, path: str) -> str:
        value = self.text(node, path, bad_uuid)
        if value:
            self.unique("UUID", value, node, path, scope="the inventory")
        return value

    def port(self, node: yaml.Node | None, path: str) -> int:
        if node is None:
            return DEFAULT_PORT
        value = integer(node)
        if value is None or not 1 <= value <= 65535:
            got = kind(node) if value is None else value
            fix = f"fix it, or remove the field for the default ({DEFAULT_PORT})"
            self.add(node, path, f"expected a port number from 1 to 65535, got {got}; {fix}")
            return 0
        return value

    def version(self, node: yaml.Node | None, path: str) -> None:
        if node is not None and integer(node) != VERSION:
            self.add(
                node,
                path,
                f"unsupported version; this sftrenew reads version {VERSION}: write 'version: {VERSION}'",
            )
