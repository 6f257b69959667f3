"""`sftrenew inventory import` and `sftrenew inventory check`: an inventory from what the operator has.

`import --csv` reads the vendor's `devices.csv` (device-facts 4.2) and `import --fmc` asks the FMC's REST API
(`sftrenew.fmc_api`); both write the inventory (docs/inventory.md) and a secrets file. The secrets file is
created with mode 0600 from its first byte (a private temporary file renamed into place); the inventory never
holds a password. Neither file is replaced unless `--force`. The pure parts (CSV, the document, the FMC's
pages) are `pipeline.inventory_import` and `pipeline.fmc_rest`; `check` is `sftrenew.inventory_check`.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from pipeline import fmc_rest
from pipeline.errors import ConfigError
from pipeline.inventory import DEFAULT_PORT
from pipeline.inventory_import import (
    ImportedDevice,
    ImportedPair,
    credential_name,
    inventory_document,
    inventory_text,
    pair_from_csv,
    parse_devices_csv,
    secrets_template,
    secrets_text,
)
from pipeline.inventory_loader import load_inventory
from pipeline.settings import Settings
from sftrenew import inventory_check
from sftrenew.fmc_api import FmcApi, TlsChoice, normalize_fingerprint

Sub = Any

PASSWORD_VARIABLE = "SFTRENEW_FMC_PASSWORD"  # noqa: S105 - the variable's name
EXIT_OK = 0


def add_commands(sub: Sub) -> None:
    inventory = sub.add_parser("inventory", help="make an inventory from devices.csv or the FMC; check one")
    commands = inventory.add_subparsers(dest="inventory_command", required=True)

    imp = commands.add_parser("import", help="write the inventory and its secrets file from a CSV or an FMC")
    source = imp.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, help="the vendor's devices.csv (name, IP, admin user, password)")
    source.add_argument("--fmc", metavar="HOST", help="the primary FMC: list its devices over its REST API")
    imp.add_argument("--pair", required=True, help="the name of the FMC pair in the inventory")
    imp.add_argument(
        "--secondary",
        help="the secondary FMC: with --csv its device name (default: the last line), with --fmc its host",
    )
    imp.add_argument("--inventory", type=Path, help="where to write it (default: $SFTRENEW_INVENTORY, else "
                     "./inventory.yaml)")  # fmt: skip
    imp.add_argument("--secrets", type=Path, help="the secrets file (default: secrets.yaml next to it)")
    imp.add_argument("--force", action="store_true", help="replace an existing inventory or secrets file")
    rest = imp.add_argument_group("with --fmc")
    rest.add_argument("--fmc-port", type=int, default=443, help="the FMC's HTTPS port (443)")
    rest.add_argument("--user", default="admin", help="the FMC REST user (admin)")
    rest.add_argument(
        "--password-env", default=PASSWORD_VARIABLE, metavar="VARIABLE",
        help=f"the variable holding that user's password ({PASSWORD_VARIABLE}); asked for when unset",
    )  # fmt: skip
    tls = rest.add_mutually_exclusive_group()
    tls.add_argument("--ca-file", type=Path, help="verify the FMC's certificate against this PEM file")
    tls.add_argument("--fingerprint", metavar="SHA256", help="accept only this certificate (SHA-256)")
    tls.add_argument("--insecure", action="store_true", help="do not verify the FMC's certificate (unsafe)")
    rest.add_argument("--page-size", type=int, default=fmc_rest.MAX_PAGE_SIZE, help="devices per page (1000)")
    rest.add_argument("--fmc-names", default="fmc-primary,fmc-secondary", metavar="PRIMARY,SECONDARY",
                      help="the FMCs' names in the inventory")  # fmt: skip
    rest.add_argument("--ssh-user", default="admin", help="the devices' SSH admin login (admin)")
    imp.set_defaults(run=_import)

    check = commands.add_parser("check", help="load an inventory and say what it holds and what is missing")
    check.add_argument("--inventory", type=Path, help="the inventory (default: $SFTRENEW_INVENTORY)")
    check.set_defaults(run=inventory_check.run)


# ---------------------------------------------------------------------------------------------- import


def _import(args: argparse.Namespace, settings: Settings) -> int:
    target = args.inventory or settings.inventory or Path("inventory.yaml")
    secrets_path = args.secrets or target.parent / "secrets.yaml"
    known_hosts = target.parent / "known_hosts"
    for path in (target, secrets_path):
        if not path.parent.is_dir():
            raise ConfigError(
                f"cannot write {path}: the folder {path.parent} does not exist; create it first"
            )
    if not args.force and target.exists():
        raise ConfigError(f"{target} exists; pass --force to replace it, or choose another --inventory")
    if args.csv is not None:
        return _import_csv(args, target, secrets_path, known_hosts)
    return _import_fmc(args, target, secrets_path, known_hosts)


def _import_csv(args: argparse.Namespace, target: Path, secrets_path: Path, known_hosts: Path) -> int:
    if not args.force and secrets_path.exists():
        raise ConfigError(f"{secrets_path} exists; pass --force to replace it, or choose another --secrets")
    try:
        text = args.csv.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read {args.csv}: {why}; give the vendor's devices.csv") from None
    devices = parse_devices_csv(text, source=str(args.csv))
    imported, secrets = pair_from_csv(devices, pair=args.pair, secondary=args.secondary, source=str(args.csv))
    text = _checked_inventory(imported, target, secrets_path, known_hosts, origin=str(args.csv))
    write_private(secrets_path, secrets_text(secrets), replace=args.force)
    write_public(target, text, replace=args.force)
    _say_written(imported, target)
    print(
        f"wrote {secrets_path} (mode 0600): {len(secrets)} password(s), one per login "
        f"({', '.join(secrets)}); the inventory holds none"
    )
    print(
        f"{args.csv} still holds every password in clear: delete it, or keep it as private as the "
        "secrets file"
    )
    _say_next(target, known_hosts, [imported.primary, imported.secondary, *imported.ftds])
    return EXIT_OK


def _import_fmc(args: argparse.Namespace, target: Path, secrets_path: Path, known_hosts: Path) -> int:
    if args.secondary is None:
        raise ConfigError(
            "--fmc needs --secondary HOST: the FMC HA peer (sftrenew renews both FMCs of a pair)"
        )
    names = [name.strip() for name in args.fmc_names.split(",")]
    if len(names) != 2 or names[0] == names[1]:
        raise ConfigError("--fmc-names takes two different names, PRIMARY,SECONDARY")
    if not 1 <= args.page_size <= fmc_rest.MAX_PAGE_SIZE:
        raise ConfigError(f"--page-size must be 1 to {fmc_rest.MAX_PAGE_SIZE} (the FMC lowers a larger one)")
    api = FmcApi(args.fmc, args.fmc_port, user=args.user, password=_rest_password(args), tls=_tls(args))
    try:
        records = api.device_records(args.page_size)
    finally:
        api.close()
    stats = api.stats
    print(
        f"FMC {api.where}: {len(records)} device(s) listed in {stats.requests} request(s); "
        f"rate-limited {stats.rate_limited} time(s) (waited {sum(stats.waits_s):.0f} s), "
        f"token generated {stats.generated} time(s), refreshed {stats.refreshed} time(s)"
    )
    try:
        ftds = fmc_rest.inventory_ftds(records, taken=names)
    except fmc_rest.ApiShapeError as exc:
        raise ConfigError(
            f"FMC {api.where}: {exc}; fix the device on the FMC or write the inventory by hand"
        ) from None
    credential = credential_name(args.pair, 1)
    imported = ImportedPair(
        pair=args.pair,
        primary=ImportedDevice(name=names[0], host=args.fmc, credential=credential),
        secondary=ImportedDevice(name=names[1], host=args.secondary, credential=credential),
        ftds=tuple(
            ImportedDevice(name=f.name, host=f.host, credential=credential, uuid=f.uuid) for f in ftds
        ),
        credentials={credential: args.ssh_user},
    )
    text = _checked_inventory(imported, target, secrets_path, known_hosts, origin=f"the FMC at {api.where}")
    for ftd in ftds:
        if ftd.renamed_from is not None:
            print(f"renamed '{ftd.renamed_from}' to '{ftd.name}' (inventory names: letters, digits, . _ -)")
    template = not secrets_path.exists()
    if template:
        write_private(secrets_path, secrets_template([credential]), replace=False)
    write_public(target, text, replace=args.force)
    _say_written(imported, target)
    state = "created it (mode 0600) with no password in it" if template else "left it as it was"
    print(
        f"the FMC's listing holds no password: {secrets_path}: {state}; add the line "
        f"'{credential}: \"<password>\"' (the SSH password of '{args.ssh_user}' on every device), or "
        "change the credentials in the inventory"
    )
    _say_next(target, known_hosts, [imported.primary, imported.secondary, *imported.ftds])
    return EXIT_OK


def _rest_password(args: argparse.Namespace) -> SecretStr:
    value = os.environ.get(args.password_env, "")
    if value:
        return SecretStr(value)
    if not sys.stdin.isatty():
        raise ConfigError(
            f"no password for the FMC REST user '{args.user}': set {args.password_env} (or run on a terminal "
            "to be asked)"
        )
    return SecretStr(getpass.getpass(f"password of {args.user} on {args.fmc}: "))


def _tls(args: argparse.Namespace) -> TlsChoice:
    if args.fingerprint is not None:
        pin = normalize_fingerprint(args.fingerprint)
        if len(pin) != 64 or any(c not in "0123456789abcdef" for c in pin):
            raise ConfigError("--fingerprint takes the certificate's SHA-256: 64 hex digits, colons allowed")
        return TlsChoice(fingerprint=pin)
    if args.insecure:
        print(
            "sftrenew: WARNING: --insecure: the FMC's certificate is NOT checked; whoever sits between here "
            f"and {args.fmc} can read the password of '{args.user}'. Use --ca-file or --fingerprint instead.",
            file=sys.stderr,
        )
        return TlsChoice(insecure=True)
    return TlsChoice(ca_file=args.ca_file)


def _checked_inventory(
    imported: ImportedPair, target: Path, secrets_path: Path, known_hosts: Path, *, origin: str
) -> str:
    """The inventory's text, loaded back with the product's own loader before anything is written."""
    document = inventory_document(
        imported, known_hosts=_relative(known_hosts, target), secrets_file=_relative(secrets_path, target)
    )
    text = inventory_text(document, origin=origin)
    load_inventory(text, source=str(target))
    return text


def _relative(path: Path, inventory: Path) -> str:
    """How the inventory names `path`: relative when it is in the inventory's folder, else absolute."""
    if path.parent.resolve() == inventory.parent.resolve():
        return path.name
    return str(path.resolve())


def _say_written(imported: ImportedPair, target: Path) -> None:
    print(
        f"wrote {target}: pair {imported.pair}: primary {imported.primary.name} ({imported.primary.host}), "
        f"secondary {imported.secondary.name} ({imported.secondary.host}), {len(imported.ftds)} FTD(s)"
    )


def _say_next(target: Path, known_hosts: Path, devices: Sequence[ImportedDevice]) -> None:
    if not known_hosts.exists():
        print(
            f"{known_hosts} does not exist yet: add each device's host key "
            f"(`ssh-keyscan -p {DEFAULT_PORT} HOST >> {known_hosts}` for its {len(devices)} devices) and "
            "check the keys out of band"
        )
    print(f"next: export SFTRENEW_INVENTORY={target.resolve()}; sftrenew inventory check")


def write_private(path: Path, text: str, *, replace: bool) -> None:
    """Write `path` readable by its owner only, from the first byte: a 0600 temporary file (mkstemp makes it
    so) in the same folder, synced, then renamed over `path` (`replace`) or linked to it (never replacing
    one that appeared meanwhile)."""
    _write(path, text.encode(), 0o600, replace=replace)


def write_public(path: Path, text: str, *, replace: bool) -> None:
    _write(path, text.encode(), 0o644, replace=replace)


def _write(path: Path, data: bytes, mode: int, *, replace: bool) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise ConfigError(f"{path} exists; pass --force to replace it") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
