"""A running fleet: its devices and what is in force on each, steered while it runs and stopped.

`compose.start_fleet` makes one. `Fleet.set_knobs` changes a device's behaviour while it runs (a route
opened, a host key changed), which is how tests move a fleet from one situation to the next; `Fleet.stop`
ends it, leaving nothing running. What the devices' tools ask of the fleet is served by `control_ops`.
What clients did over SSH is counted per device (`sessions_opened`, `round_trips`, `usage`; see
`sftlab.shell.usage`) and can be written to a JSON file (`write_usage`) for a reader in another process.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import asyncssh
from cryptography import x509

from sftlab.fleet.keys import KeyPool
from sftlab.fleet.layout import DeviceTree, write_file_atomic
from sftlab.fleet.spec import JUMP, Knobs, ResolvedLab
from sftlab.rest.server import RestServer
from sftlab.shell.jump import Address
from sftlab.shell.routes import FrontDoor
from sftlab.shell.session import Endpoint
from sftlab.shell.usage import DeviceUsage
from sftlab.tools import control
from sftlab.tunnel.hub import SftunnelHub, TunnelDevice

#: Bound on waiting for aborted sessions to hang up (each shell level: a bash's grace, then SIGKILL).
_SESSIONS_END_S = 20.0

Role = Literal["fmc-primary", "fmc-secondary", "ftd", "jump"]


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
    #: FMCs only: the REST API over HTTPS (`sftlab.rest`), and its self-signed certificate.
    rest: RestServer | None = None
    rest_cert: x509.Certificate | None = None

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
    """A running lab. Use `compose.start_fleet` to make one and `stop` to end it."""

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
        device.endpoint.password = self.device_password(name, new)
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

    def device_password(self, name: str, knobs: Knobs) -> str:
        """The password the device accepts now: its base one, or another when `wrong_password` is set."""
        base = self.jump_password if name == JUMP else self.admin_password
        return base + "-rotated" if knobs.wrong_password else base

    async def restart_sftunnel(self, name: str) -> None:
        """Restart the device's sftunnel from outside (a test's hand); not counted in `restarts`."""
        await self.hub.restart(name)

    def restarts(self, name: str) -> int:
        """How often the device's own `pmtool restartbyid sftunnel` restarted its sftunnel: a restart whose
        connection the `drop_once` knob cut does not count, nor `restart_sftunnel`."""
        return self.restart_counts.get(name, 0)

    def refused_logins(self, name: str) -> int:
        """How many SSH password logins the device refused, by any route (a real FTD's AAA lockout counts
        these)."""
        return self.devices[name].endpoint.refused_logins

    def startups_dropped(self, name: str) -> int:
        """How many connections the device closed before its banner, past its `max_startups` knob (sshd's
        MaxStartups), by any route."""
        return self.devices[name].endpoint.startups_dropped

    def sessions_opened(self, name: str) -> int:
        """How many SSH sessions (interactive or exec) were opened on the device, by any route."""
        return self.devices[name].endpoint.usage.sessions_opened

    def round_trips(self, name: str) -> int:
        """How many command round trips clients made on the device: each input sent after the device had
        written output, and each exec request (`sftlab.shell.usage`)."""
        return self.devices[name].endpoint.usage.round_trips

    def usage(self) -> dict[str, DeviceUsage]:
        """Per device, what was counted since the lab started (live objects: read them on the lab's loop)."""
        return {name: device.endpoint.usage for name, device in self.devices.items()}

    def write_usage(self, path: Path) -> None:
        """Write `usage()` as JSON to `path`, atomically (a reader never sees half a file)."""
        data = {
            "written_at": time.time(),
            "devices": {name: usage.as_json() for name, usage in self.usage().items()},
        }
        write_file_atomic(path, (json.dumps(data) + "\n").encode())

    def rest_statuses(self, name: str) -> dict[int, int]:
        """What the FMC's REST API answered so far, by HTTP status (a copy)."""
        rest = self.devices[name].rest
        return dict(rest.api.statuses) if rest is not None else {}

    async def stop(self) -> None:
        """Close every listener, session, shell and tunnel; nothing is left running."""
        sessions = []
        for device in self.devices.values():
            if device.rest is not None:
                await device.rest.close()
            for session in list(device.endpoint.sessions):
                session.abort()
                sessions.append(session)
            for conn in list(device.endpoint.connections):
                conn.abort()
            if device.front is not None:
                await device.front.close()
            for acceptor in (device.back, device.jump_acceptor):
                if acceptor is not None:
                    acceptor.close()
                    await acceptor.wait_closed()
        # An aborted session still hangs up its shells (SIGHUP, a grace, SIGKILL); waited for here, or the
        # runner's last cancel would cut that short and leave a device's bash running past the lab.
        if sessions:
            await asyncio.wait([asyncio.ensure_future(s.ended()) for s in sessions], timeout=_SESSIONS_END_S)
        await self.hub.close()
        if self.control_server is not None:
            await self.control_server.close()
