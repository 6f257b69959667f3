"""Start, steer and stop a whole simulated fleet: an FMC pair, N FTDs and a jump server, on loopback.

`start_fleet` binds every listener, seeds every device's files, brings the sftunnels up and only then writes
the files a client needs (`inventory.yaml`, `known_hosts`, the secrets file, `lab.json`): their presence is
the readiness signal. `Fleet.set_knobs` changes a device's behaviour while it runs (a route opened, a host key
changed), which is how tests move a fleet from one situation to the next.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import asyncssh

from sftlab.fleet.addresses import allocate
from sftlab.fleet.client_files import JUMP_USER, write_client_files
from sftlab.fleet.keys import KeyPool, default_cache_dir
from sftlab.fleet.layout import DEVICE_PREFIXES, DeviceTree
from sftlab.fleet.seed import FleetFiles, FmcPlan, Identity, seed_fleet
from sftlab.fleet.spec import FMC_NAMES, JUMP, PRIMARY, Knobs, LabSpec, ResolvedLab, resolve
from sftlab.shell.jump import Address, listen_jump
from sftlab.shell.pathmap import PathMap
from sftlab.shell.routes import FrontDoor
from sftlab.shell.server import ClishStatus, Endpoint, listen
from sftlab.shell.texts import DeviceFace
from sftlab.tools import control, programs, regen
from sftlab.tools.status_text import render_brief, render_status
from sftlab.tunnel.hub import SftunnelHub, TunnelDevice

log = logging.getLogger(__name__)

Role = Literal["fmc-primary", "fmc-secondary", "ftd", "jump"]
FMC_VERSION = ("7.2.9", "78", "Secure Firewall Management Center for VMware (66)")
FTD_VERSION = ("7.2.5", "208", "Cisco Firepower Threat Defense for VMware (75)")


@dataclass
class LabDevice:
    """One running device: identity, files, SSH listeners and the knobs in force."""

    name: str
    role: Role
    uuid: str
    ip: str
    root: Path
    endpoint: Endpoint
    presented_key: asyncssh.SSHKey
    known_key: asyncssh.SSHKey
    front: FrontDoor | None = None
    back: asyncssh.SSHAcceptor | None = None
    back_port: int | None = None
    jump_acceptor: asyncssh.SSHAcceptor | None = None

    @property
    def kind(self) -> Literal["fmc", "ftd", "jump"]:
        return "fmc" if self.role.startswith("fmc") else "jump" if self.role == "jump" else "ftd"

    @property
    def port(self) -> int:
        if self.jump_acceptor is not None:
            return self.jump_acceptor.get_port()
        assert self.front is not None  # noqa: S101 - every non-jump device has a front door
        return self.front.port

    @property
    def knobs(self) -> Knobs:
        return self.endpoint.knobs


@dataclass
class Fleet:
    """A running lab. Use `start_fleet` to make one and `stop` to end it."""

    directory: Path
    lab: ResolvedLab
    devices: dict[str, LabDevice]
    hub: SftunnelHub
    keys: KeyPool
    admin_password: str
    jump_password: str
    addresses: dict[str, str]
    control_server: control.ControlServer | None = None
    started_utc: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: Per device: how many `pmtool restartbyid sftunnel` really restarted its sftunnel (`restarts`).
    restart_counts: dict[str, int] = field(default_factory=dict)
    #: Devices whose one dropped restart (`restart: drop_once`) has happened.
    restart_dropped: set[str] = field(default_factory=set)

    @property
    def inventory_path(self) -> Path:
        return self.directory / "inventory.yaml"

    def tree(self, name: str) -> DeviceTree:
        device = self.devices[name]
        return DeviceTree(device.root, "fmc" if device.kind == "fmc" else "ftd")

    def tunnel_device(self, name: str) -> TunnelDevice:
        device = self.devices[name]
        return TunnelDevice(name=name, hostname=name, uuid=device.uuid, ip=device.ip, tree=self.tree(name))

    def routes(self) -> Mapping[Address, Address | None]:
        """What the jump server can reach: published address -> the device's jump-only listener."""
        table: dict[Address, Address | None] = {}
        for device in self.devices.values():
            if device.front is None:
                continue
            reach = device.knobs.via_jump and device.back_port is not None
            table[(device.ip, device.front.port)] = (device.ip, device.back_port) if reach else None  # type: ignore[assignment]
        return table

    async def set_knobs(self, name: str, **changes: object) -> None:
        """Change a device's behaviour now: routes, host key, latency, sudo, passwords, drops."""
        device = self.devices[name]
        old = device.knobs
        new = old.model_copy(update=changes)
        Knobs.model_validate(new.model_dump())  # the same checks as at load time
        device.endpoint.knobs = new
        device.endpoint.password = self._device_password(name, new)
        if device.front is not None and new.direct != old.direct:
            await device.front.set_mode(new.direct)
        if new.host_key_changed and not old.host_key_changed:
            device.presented_key = asyncssh.generate_private_key("ssh-ed25519")
            for acceptor in (
                device.front.acceptor if device.front else None,
                device.back,
                device.jump_acceptor,
            ):
                if acceptor is not None:
                    acceptor.update(server_host_keys=[device.presented_key])

    def _device_password(self, name: str, knobs: Knobs) -> str:
        base = self.jump_password if name == JUMP else self.admin_password
        return base + "-rotated" if knobs.wrong_password else base

    async def restart_sftunnel(self, name: str) -> None:
        """Restart the device's sftunnel from outside (a test's hand); not counted in `restarts`."""
        await self.hub.restart(name)

    def restarts(self, name: str) -> int:
        """How often the device's own `pmtool restartbyid sftunnel` restarted its sftunnel: a restart whose
        connection the `drop_once` knob cut does not count, nor `restart_sftunnel`."""
        return self.restart_counts.get(name, 0)

    async def _pmtool_restart(self, name: str) -> control.Reply:
        """`pmtool restartbyid sftunnel`. With `restart: drop_once`, the device's first one cuts every SSH
        connection to the device before anything restarts (the pmtool process dies with its session's bash, as
        it would with a network that fails between a push's write and its restart); later ones restart."""
        device = self.devices[name]
        if device.knobs.restart == "drop_once" and name not in self.restart_dropped:
            self.restart_dropped.add(name)
            for session in list(device.endpoint.sessions):
                session.abort()
            return {"stdout": "", "stderr": "Connection to the device lost\n", "code": 255}
        await self.hub.restart(name)
        self.restart_counts[name] = self.restart_counts.get(name, 0) + 1
        return {"stdout": "", "stderr": "", "code": 0}

    async def handle_control(self, request: control.Request) -> control.Reply:
        """Serve the device tools (see `lab.tools`)."""
        name = str(request["device"])
        op = request["op"]
        tree = self.tree(name)
        now = datetime.now(UTC)
        if op == "status":
            peer = request.get("peer")
            out, err, code = render_status(
                device_ip=self.devices[name].ip,
                start_time_utc=self.hub.started_utc(name),
                states=self.hub.peer_states(name),
                peer_filter=str(peer) if peer else None,
                script_path=f"{tree.bin_dir}/sftunnel_status.pl",
            )
            return {"stdout": out, "stderr": err, "code": code}
        if op == "restart":
            return await self._pmtool_restart(name)
        if op == "pmtool_status":
            return {"stdout": _pmtool_status(tree), "stderr": "", "code": 0}
        if op == "ca_expiry":
            return {"stdout": regen.ca_expiry_line(tree, now) + "\n", "stderr": "", "code": 0}
        if op == "regenerate":
            report = await regen.regenerate(self.hub, self.tunnel_device(name), keys=self.keys, now_utc=now)
            return {"stdout": report.stdout, "stderr": "", "code": 0}
        return {"stdout": "", "stderr": f"lab: unknown control op {op!r}\n", "code": 64}

    async def stop(self) -> None:
        """Close every listener, session, shell and tunnel; nothing is left running."""
        for device in self.devices.values():
            for session in list(device.endpoint.sessions):
                session.abort()
            if device.front is not None:
                await device.front.close()
            for acceptor in (device.back, device.jump_acceptor):
                if acceptor is not None:
                    acceptor.close()
                    await acceptor.wait_closed()
        await self.hub.close()
        if self.control_server is not None:
            await self.control_server.close()


def _pmtool_status(tree: DeviceTree) -> str:
    # ASSUMED format (device-facts 7.1).
    return (
        "sftunnel (system) - Running 4171\n"
        f"Command: {tree.bin_dir.replace('/bin', '')}/bin/sftunnel -d -f {tree.SFTUNNEL_CONF}\n"
        "PID File: /var/sf/run/sftunnel.pid\n"
        f"Enable File: {tree.SFTUNNEL_CONF}\n"
    )


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
        control.socket_path_for(fleet.directory), fleet.handle_control
    )
    await fleet.control_server.start()
    shim_dir = fleet.directory / "labbin"
    programs.install_shims(shim_dir)
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
    write_client_files(fleet)


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
    programs.install_tools(
        tree.host_path(tree.bin_dir), programs.TOOLS_FMC if tree.kind == "fmc" else programs.TOOLS_FTD
    )
    endpoint = Endpoint(
        name=name,
        face=DeviceFace(tree.kind, name, device_uuid, version, build, model),
        login_user="admin",
        password=fleet._device_password(name, knobs),
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
        reply = await fleet.handle_control({"op": "status", "device": name, "peer": None})
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
        password=fleet._device_password(name, fleet.lab.knobs[name]),
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
