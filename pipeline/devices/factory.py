"""Sessions by device name: what steps and tasks call to reach an FMC or FTD over a given route.

The factory joins the inventory (where a device is, which credential, which jump server), the secrets (the
password, resolved only when a session opens) and the settings (timeouts, host-key policy, known_hosts
override). Tasks pass only names and routes, which is what Flower and the broker may show.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.devices.fabric_session import FabricSession, Login
from pipeline.devices.session import DIRECT, DeviceSession, Route
from pipeline.errors import InventoryError, InventoryProblem
from pipeline.inventory import Fmc, Ftd, Inventory, JumpServer
from pipeline.secrets import SecretResolver
from pipeline.settings import Settings


class SessionFactory:
    """Opens root sessions on the FMCs and FTDs of one pair, or of every pair when `pair` is None."""

    def __init__(
        self, inventory: Inventory, pair: str | None, secrets: SecretResolver, settings: Settings
    ) -> None:
        self._inventory = inventory
        self._pairs = (inventory.pair(pair),) if pair is not None else tuple(inventory.pairs.values())
        self._secrets = secrets
        self._settings = settings

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
        for a missing password, and the DeviceErrors of `FabricSession.open`.
        """
        device = self._device(device_name)
        jump = self._jump_for(device, route) if route.kind == "jump" else None
        return FabricSession.open(
            self._login(device),
            route=route,
            ssh=self._settings.ssh,
            known_hosts=self.known_hosts,
            jump=self._login(jump) if jump is not None else None,
        )

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
