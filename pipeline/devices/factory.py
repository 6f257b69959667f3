"""Sessions by device name: what steps and tasks call to reach an FMC or FTD over a given route.

The factory joins the inventory (where a device is, which credential, which jump server), the secrets (the
password, resolved only when a session opens) and the settings (timeouts, host-key policy, known_hosts
override). Tasks pass only names and routes, which is what Flower and the broker may show.

A jump server serves many devices, and each login it refuses counts towards its AAA lockout as much as a
device's: `guarded()` gives a factory for one bounded use (one step, one command, one in-process run) that
logs in through a jump server no more once it refused a login (`JumpGate`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from pipeline.devices.fabric_session import FabricSession, Login
from pipeline.devices.session import DIRECT, DeviceSession, Route
from pipeline.errors import DeviceError, InventoryError, InventoryProblem, is_refusal
from pipeline.inventory import Fmc, Ftd, Inventory, JumpServer
from pipeline.secrets import SecretResolver
from pipeline.settings import Settings


class JumpGate:
    """The jump servers that refused a login (their credential or host key), for as long as one factory
    holding the gate is used: a later login through such a jump server fails at once with the refusal it
    gave, without connecting. The first login through each jump server goes alone (the others wait for its
    outcome), so that parallel logins do not all try a credential that turns out wrong; after it, logins
    through that jump server run in parallel. Only a refusal by the jump server itself is remembered (the
    error is reported under its name): a device's own refusal or an unreachable host is not."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._first: dict[str, threading.Lock] = {}
        self._tried: set[str] = set()
        self._refused: dict[str, DeviceError] = {}

    def through(self, jump: str, connect: Callable[[], DeviceSession]) -> DeviceSession:
        """`connect()` (a login through `jump`), unless `jump` refused a login before."""
        with self._lock:
            first = self._first.setdefault(jump, threading.Lock())
        with first:
            refused = self._refused.get(jump)
            if refused is not None:
                raise type(refused)(*refused.args)  # a copy: the same object raised twice keeps one traceback
            if jump not in self._tried:
                try:
                    return connect()
                except DeviceError as exc:
                    if exc.device == jump and is_refusal(exc):
                        self._refused[jump] = exc
                    raise
                finally:
                    self._tried.add(jump)
        return connect()


class SessionFactory:
    """Opens root sessions on the FMCs and FTDs of one pair, or of every pair when `pair` is None."""

    def __init__(
        self,
        inventory: Inventory,
        pair: str | None,
        secrets: SecretResolver,
        settings: Settings,
        *,
        jump_gate: JumpGate | None = None,
    ) -> None:
        self._inventory = inventory
        self._pair = pair
        self._pairs = (inventory.pair(pair),) if pair is not None else tuple(inventory.pairs.values())
        self._secrets = secrets
        self._settings = settings
        self._jump_gate = jump_gate

    def guarded(self) -> SessionFactory:
        """This factory with a fresh `JumpGate`: for one bounded use (a step, a command, an in-process run),
        never for a worker's lifetime (the operator may fix the jump server's credential at any time)."""
        return SessionFactory(
            self._inventory, self._pair, self._secrets, self._settings, jump_gate=JumpGate()
        )

    @property
    def known_hosts(self) -> Path:
        """The file host keys are checked against: the settings' override, else the inventory's."""
        return self._settings.ssh.known_hosts or Path(self._inventory.known_hosts)

    def routes_for(self, device_name: str) -> list[Route]:
        """The routes to try, in order: direct, then the device's jump server if it has one."""
        device = self._device(device_name)
        jump = device.jump if isinstance(device, Ftd) else None
        return [DIRECT] if jump is None else [DIRECT, Route("jump", jump)]

    def open(self, device_name: str, route: Route) -> DeviceSession:
        """A root session on the device over `route`.

        Raises InventoryError for an unknown device or a jump route the device does not have, ConfigError
        for a missing password, and the DeviceErrors of `FabricSession.open`; with a jump gate (`guarded()`),
        the refusal a jump server gave, again, without connecting through it.
        """
        device = self._device(device_name)
        jump = self._jump_for(device, route) if route.kind == "jump" else None

        def connect() -> DeviceSession:
            return FabricSession.open(
                self._login(device),
                route=route,
                ssh=self._settings.ssh,
                known_hosts=self.known_hosts,
                jump=self._login(jump) if jump is not None else None,
            )

        if jump is not None and self._jump_gate is not None:
            return self._jump_gate.through(jump.name, connect)
        return connect()

    def _login(self, entry: Fmc | Ftd | JumpServer) -> Login:
        credential = self._inventory.credentials[entry.credential]
        password = self._secrets.password(entry.credential)
        return Login(entry.name, entry.host, entry.port, credential.username, password)

    def _devices(self) -> list[Fmc | Ftd]:
        devices: list[Fmc | Ftd] = []
        for pair in self._pairs:
            devices.extend(pair.fmcs)
            devices.extend(pair.ftds)
        return devices

    def _device(self, name: str) -> Fmc | Ftd:
        for device in self._devices():
            if device.name == name:
                return device
        known = sorted(device.name for device in self._devices())
        where = f"pairs.{self._pairs[0].name}" if len(self._pairs) == 1 else "pairs"
        hint = " (a jump server is a route, not a device)" if name in self._inventory.jump_servers else ""
        message = f"no FMC or FTD named '{name}'{hint}; known: {', '.join(known) or 'none'}"
        raise InventoryError([InventoryProblem(self._inventory.source, None, where, message)])

    def _jump_for(self, device: Fmc | Ftd, route: Route) -> JumpServer:
        own = device.jump if isinstance(device, Ftd) else None
        if own is None or (route.jump is not None and route.jump != own):
            has = f"its jump server is '{own}'" if own else "it has no jump server"
            fix = (
                "use the routes from routes_for()"
                if own
                else "add jump: <name> to it, or use the direct route"
            )
            message = f"route '{route}' asked for {device.name}, but {has}; {fix}"
            raise InventoryError([InventoryProblem(self._inventory.source, None, device.name, message)])
        return self._inventory.jump_servers[own]
