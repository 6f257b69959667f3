"""Start a whole simulated fleet: an FMC pair, N FTDs and a jump server, on loopback (the composition root).

`start_fleet` binds every listener, seeds every device's files, brings the sftunnels up and only then writes
the files a client needs (`inventory.yaml`, `known_hosts`, the secrets file, `lab.json`): their presence is
the readiness signal. It returns a `running.Fleet`, which is steered and stopped from there; the devices'
tools are served by `control_ops`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import asyncssh

from sftlab.fleet import control_ops
from sftlab.fleet.addresses import allocate
from sftlab.fleet.client_files import JUMP_USER, write_client_files
from sftlab.fleet.keys import KeyPool, default_cache_dir
from sftlab.fleet.layout import DEVICE_PREFIXES, DeviceTree
from sftlab.fleet.running import Fleet, LabDevice, Role
from sftlab.fleet.seed import FleetFiles, FmcPlan, Identity, seed_fleet
from sftlab.fleet.spec import FMC_NAMES, JUMP, PRIMARY, Knobs, LabSpec, resolve
from sftlab.rest.api import FmcRestApi
from sftlab.rest.server import RestServer, self_signed_cert, server_context
from sftlab.shell.jump import listen_jump
from sftlab.shell.pathmap import PathMap
from sftlab.shell.routes import FrontDoor
from sftlab.shell.server import listen
from sftlab.shell.session import ClishStatus, Endpoint
from sftlab.shell.texts import DeviceFace
from sftlab.tools import control, install
from sftlab.tools.status_text import render_brief
from sftlab.tunnel.hub import SftunnelHub, TunnelDevice

log = logging.getLogger(__name__)

FMC_VERSION = ("7.2.9", "78", "Secure Firewall Management Center for VMware (66)")
FTD_VERSION = ("7.2.5", "208", "Cisco Firepower Threat Defense for VMware (75)")


def _device_uuid() -> str:
    """A time-based UUIDv1 with a random node, like the appliance's (device-facts: minted at install)."""
    return str(uuid.uuid1(node=secrets.randbits(48) | 0x010000000000))


async def start_fleet(spec: LabSpec, directory: Path, *, keys: KeyPool | None = None) -> Fleet:
    """Start the lab described by `spec` with its files in `directory`; returns once every listener is bound
    and the client files are written."""
    lab = resolve(spec)
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    keys = keys or KeyPool(default_cache_dir())
    addresses = allocate(spec.network, spec.ftds)
    admin_password = spec.password or secrets.token_urlsafe(12)
    jump_password = spec.jump_password or secrets.token_urlsafe(12)
    uuids = {name: _device_uuid() for name in addresses}
    roots = {name: directory / "devices" / name for name in addresses}
    tunnel_devices = [
        TunnelDevice(
            name=name,
            hostname=name,
            uuid=uuids[name],
            ip=addresses[name],
            tree=DeviceTree(roots[name], "fmc" if name in FMC_NAMES else "ftd"),
        )
        for name in addresses
        if name != JUMP
    ]
    hub = SftunnelHub(
        tunnel_devices, retry_interval=spec.retry_interval_s, heartbeat_interval=spec.heartbeat_interval_s
    )
    fleet = Fleet(directory, lab, {}, hub, keys, admin_password, jump_password, dict(addresses))
    try:
        await _build(fleet, addresses, uuids, roots)
    except BaseException:
        await fleet.stop()
        raise
    return fleet


async def _build(
    fleet: Fleet, addresses: Mapping[str, str], uuids: Mapping[str, str], roots: Mapping[str, Path]
) -> None:
    lab = fleet.lab
    ports = {name: await fleet.hub.listen(name) for name in FMC_NAMES}
    now = datetime.now(UTC)
    plan = FleetFiles(
        fmcs=tuple(
            FmcPlan(
                _identity(name, uuids[name], addresses[name]),
                lab.knobs[name].ca_days_left or 0,
                ports[name],
                lab.knobs[name].ca_format,
            )
            for name in FMC_NAMES
        ),
        ftds=tuple(
            _identity(n, uuids[n], addresses[n]) for n in addresses if n not in FMC_NAMES and n != JUMP
        ),
        roots=roots,
    )
    await asyncio.get_running_loop().run_in_executor(
        None, lambda: seed_fleet(plan, keys=fleet.keys, now_utc=now)
    )
    fleet.control_server = control.ControlServer(
        control.socket_path_for(fleet.directory), functools.partial(control_ops.handle, fleet)
    )
    await fleet.control_server.start()
    shim_dir = fleet.directory / "labbin"
    install.install_shims(shim_dir)
    for name, ip in addresses.items():
        fleet.devices[name] = await _start_device(fleet, name, uuids[name], ip, roots[name], shim_dir)
    down = [
        (fmc, name)
        for name, knobs in lab.knobs.items()
        if knobs.tunnel == "down" and name != JUMP
        for fmc in FMC_NAMES
        if fmc != name
    ]
    await fleet.hub.connect_all(predate_expiry=lab.predates_expiry, down_at_start=down)
    await _start_rest(fleet)
    write_client_files(fleet)


async def _start_rest(fleet: Fleet) -> None:
    """Each FMC's REST API over HTTPS (docs/lab.md), with its own self-signed certificate; both
    certificates go to `rest-ca.pem` (client_files), the file a client verifies them with."""
    keys = await asyncio.get_running_loop().run_in_executor(None, fleet.keys.take, len(FMC_NAMES))
    now = datetime.now(UTC)
    for name, key in zip(FMC_NAMES, keys, strict=True):
        device = fleet.devices[name]
        folder = fleet.directory / "rest" / name
        folder.mkdir(parents=True, exist_ok=True)
        device.rest_cert = self_signed_cert(key, name, device.ip, now)
        api = FmcRestApi(
            host=device.ip,
            password_of=functools.partial(_rest_password, fleet, name),
            devices=functools.partial(_managed_ftds, fleet),
            knobs=functools.partial(_knobs_of, device),
        )
        device.rest = RestServer(api, server_context(folder, key, device.rest_cert))
        api.host = f"{device.ip}:{await device.rest.start(device.ip)}"


def _knobs_of(device: LabDevice) -> Knobs:
    return device.knobs


def _rest_password(fleet: Fleet, name: str, user: str) -> str | None:
    """The FMC's REST login is its admin's (the password the device accepts now)."""
    device = fleet.devices[name]
    return fleet.device_password(name, device.knobs) if user == device.endpoint.login_user else None


def _managed_ftds(fleet: Fleet) -> list[dict[str, str]]:
    version, _, model = FTD_VERSION
    return [
        {"id": d.uuid, "name": d.name, "hostName": d.ip, "model": model, "sw_version": version}
        for d in fleet.devices.values()
        if d.kind == "ftd"
    ]


def _identity(name: str, device_uuid: str, ip: str) -> Identity:
    version, build, model = FMC_VERSION if name in FMC_NAMES else FTD_VERSION
    kind: Literal["fmc", "ftd"] = "fmc" if name in FMC_NAMES else "ftd"
    return Identity(name, name, device_uuid, ip, kind, version, build, model)


async def _start_device(
    fleet: Fleet, name: str, device_uuid: str, ip: str, root: Path, shim_dir: Path
) -> LabDevice:
    knobs = fleet.lab.knobs[name]
    known = asyncssh.generate_private_key("ssh-ed25519")
    presented = asyncssh.generate_private_key("ssh-ed25519") if knobs.host_key_changed else known
    if name == JUMP:
        return await _start_jump(fleet, device_uuid, root, shim_dir, (known, presented))
    tree = DeviceTree(root, _kind(name))
    version, build, model = FMC_VERSION if tree.kind == "fmc" else FTD_VERSION
    install.install_tools(
        tree.host_path(tree.bin_dir), install.TOOLS_FMC if tree.kind == "fmc" else install.TOOLS_FTD
    )
    endpoint = Endpoint(
        name=name,
        face=DeviceFace(tree.kind, name, device_uuid, version, build, model),
        login_user="admin",
        password=fleet.device_password(name, knobs),
        landing="clish",
        home=knobs.home or tree.home,
        pathmap=PathMap(str(root), DEVICE_PREFIXES),
        host_path=tree.host_path,
        bin_dirs=(tree.host_path(tree.bin_dir), shim_dir),
        extra_env=_device_env(fleet, name, tree),
        knobs=knobs,
    )
    device = LabDevice(name, _role(name), device_uuid, ip, root, endpoint, presented, known)
    if tree.kind == "ftd":
        endpoint.clish_status = _clish_status(fleet, name)
    device.front = FrontDoor(endpoint, ip, lambda: device.presented_key)
    await device.front.open(knobs.direct)
    device.back = await listen(endpoint, ip, 0, presented, only_from=fleet.addresses[JUMP])
    device.back_port = device.back.get_port()
    return device


def _kind(name: str) -> Literal["fmc", "ftd"]:
    return "fmc" if name in FMC_NAMES else "ftd"


def _role(name: str) -> Role:
    if name == PRIMARY:
        return "fmc-primary"
    if name in FMC_NAMES:
        return "fmc-secondary"
    return "jump" if name == JUMP else "ftd"


def _device_env(fleet: Fleet, name: str, tree: DeviceTree) -> dict[str, str]:
    assert fleet.control_server is not None  # noqa: S101 - started before devices
    env = {"SFTLAB_CONTROL": str(fleet.control_server.path), "SFTLAB_DEVICE": name}
    if tree.kind == "ftd":
        env["SF_ROOT_PATH"] = str(tree.host_path("/ngfw"))
    return env


def _clish_status(fleet: Fleet, name: str) -> ClishStatus:
    """CLISH `sftunnel-status` wraps the same script (ASSUMED, device-facts 2.1); `-brief` has its own."""

    async def status(brief: bool) -> str:
        if brief:
            return render_brief(fleet.hub.peer_states(name))
        reply = await control_ops.handle(fleet, {"op": "status", "device": name, "peer": None})
        return str(reply["stdout"])

    return status


async def _start_jump(
    fleet: Fleet, device_uuid: str, root: Path, shim_dir: Path, keys: tuple[asyncssh.SSHKey, asyncssh.SSHKey]
) -> LabDevice:
    """The jump server: a login straight into bash as the operator, in its own home folder."""
    name, ip = JUMP, fleet.addresses[JUMP]
    known, presented = keys
    home = f"/home/{JUMP_USER}"
    (root / home.lstrip("/")).mkdir(parents=True, exist_ok=True)
    pathmap = PathMap(str(root), (home,))
    endpoint = Endpoint(
        name=name,
        face=DeviceFace("ftd", name, device_uuid, "", "", "Linux"),
        login_user=JUMP_USER,
        password=fleet.device_password(name, fleet.lab.knobs[name]),
        landing="bash",
        home=home,
        pathmap=pathmap,
        host_path=lambda p: root / p.lstrip("/") if p == home or p.startswith(home + "/") else _outside(p),
        bin_dirs=(shim_dir,),
        extra_env={},
        knobs=fleet.lab.knobs[name],
        can_sudo=False,
    )
    device = LabDevice(name, "jump", device_uuid, ip, root, endpoint, presented, known)
    device.jump_acceptor = await listen_jump(endpoint, ip, presented, fleet.routes)
    return device


def _outside(path: str) -> Path:
    raise ValueError(f"{path} is not mapped on the jump server")
