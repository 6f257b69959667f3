"""sftunnel between simulated devices: real mutual TLS 1.2 on loopback (device-facts 7.3 and 12).

A tunnel is (owner FMC, peer): the owner listens on its own loopback address, the peer connects from its own
address to the port in its `/var/sf/peers/<owner uuid>/sftunnel.json`. Both ends build their TLS context from
the files on disk at every handshake, so new certificates take effect on the next handshake and never on an
established tunnel (device-facts 3.1: `generate_certs.pl` leaves live tunnels up). A restart or the lab's stop
drops both ends at once: the hub sees both.

The hub owns the tunnels, the listeners and each peer's connect-and-retry loop; one handshake is
`lab.tunnel_handshake`, a live session `lab.tunnel_link`, TLS and frames `lab.tunnel_tls`, and the other
files a tunnel touches `lab.tunnel_files`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial

from sftlab.tools.status_text import DOWN_REASON, PeerState
from sftlab.tunnel.files import PUSH_FILES
from sftlab.tunnel.handshake import Handshakes
from sftlab.tunnel.link import HubServices, Sessions, Tunnel, TunnelDevice, TunnelView, settle
from sftlab.tunnel.messages import MessagesLog
from sftlab.tunnel.tls import NO_CHECK_TIME

__all__ = ["NO_CHECK_TIME", "PUSH_FILES", "PeerState", "SftunnelHub", "TunnelDevice"]

log = logging.getLogger(__name__)

_BACKLOG = 1024  # a whole fleet's peers may connect at once


def _raise_if_cancelled() -> None:
    """Raise CancelledError when the current task was asked to stop and has not yet.

    Python 3.11's `asyncio.wait_for` returns the awaited result instead of raising when the result arrives in
    the same loop step as the cancel (CPython gh-86296). A restart or stop that lands just as a handshake
    completes would then be swallowed: the connector went on to wait on its new link for ever, and `_stop`
    (with the device's restart lock held) waited for the connector for ever, so every later
    `pmtool restartbyid sftunnel` on that device hung too.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SftunnelHub:
    """Every sftunnel daemon of the fleet, in the lab's event loop.

    `retry_interval` is how long a peer whose tunnel is down waits before trying again (real FTDs: ~44 s);
    `heartbeat_interval` how often each end of a live tunnel sends a heartbeat; `clock` stamps states and
    logs.
    """

    def __init__(
        self,
        devices: Sequence[TunnelDevice],
        *,
        retry_interval: float = 44.0,
        heartbeat_interval: float = 10.0,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._devices = {d.name: d for d in devices}
        self._by_uuid = {d.uuid: d for d in devices}
        if len(self._devices) != len(devices) or len(self._by_uuid) != len(devices):
            raise ValueError("sftunnel devices need unique names and UUIDs")
        self._retry = retry_interval
        self._clock = clock
        logs = {
            d.name: MessagesLog(d.tree.host_path(d.tree.messages_log), hostname=d.hostname, uuid=d.uuid)
            for d in devices
        }
        services = HubServices(clock, logs, self._notify)
        self._sessions = Sessions(services, heartbeat_interval=heartbeat_interval)
        self._handshakes = Handshakes(services, self._sessions)
        self._servers: dict[str, asyncio.Server] = {}
        self._tunnels: dict[tuple[str, str], Tunnel] = {}
        self._started: dict[str, datetime] = {}
        # One restart at a time per device, as the device's process manager does: two overlapping
        # restarts could otherwise cancel each other's handshakes and leave tunnels down.
        self._restart_locks: dict[str, asyncio.Lock] = {}
        self._created_utc = clock()
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    # ---------------------------------------------------------------- public API

    async def listen(self, fmc_name: str) -> int:
        """Bind the owner's TLS listener on its loopback address (port 0) and return the port it got."""
        device = self._device(fmc_name)
        if device.tree.kind != "fmc":
            raise ValueError(f"{fmc_name} is not an FMC: only FMCs own tunnels")
        if fmc_name not in self._servers:
            self._servers[fmc_name] = await asyncio.start_server(
                partial(self._handshakes.accept, device), host=device.ip, port=0, backlog=_BACKLOG
            )
        return int(self._servers[fmc_name].sockets[0].getsockname()[1])

    async def connect_all(
        self, *, predate_expiry: bool, down_at_start: Collection[tuple[str, str]] = ()
    ) -> None:
        """Start every tunnel found on disk; return when each (but those left down) made its first attempt.

        `down_at_start` names (owner, peer) tunnels dropped earlier: not attempted now, retried later.
        With `predate_expiry` the first handshakes ignore certificate times, as if made before the CA expired.
        """
        self._discover()
        down = set(down_at_start)
        unknown = sorted(down - self._tunnels.keys())
        if unknown:
            raise ValueError(f"no such tunnels (owner, peer): {unknown}")
        silent = sorted({t.owner.name for t in self._tunnels.values()} - self._servers.keys())
        if silent:
            raise RuntimeError(f"listen() first: no sftunnel listener for {', '.join(silent)}")
        now = self._clock()
        for name in self._devices:
            self._started.setdefault(name, now)
        firsts = []
        for key, tunnel in self._tunnels.items():
            if tunnel.connector is not None:
                continue
            if key in down:
                for view in (tunnel.owner_view, tunnel.peer_view):
                    view.last_attempt_utc = view.last_disconnect_utc = now
                    view.last_disconnect_reason = DOWN_REASON
            # A tunnel left down is first tried after a retry interval: that handshake is strict.
            attempt_now = key not in down
            firsts.append(
                self._start_connector(tunnel, attempt_now=attempt_now, lenient=predate_expiry and attempt_now)
            )
        await asyncio.gather(*firsts)

    def peer_states(self, device_name: str) -> list[PeerState]:
        """The tunnels `sftunnel_status.pl` reports on this device, one per peer folder.

        On an FMC: the tunnels it owns; on an FTD: those to the FMCs it holds folders for.
        """
        device = self._device(device_name)
        states = []
        for uuid in device.tree.peer_uuids():
            other = self._by_uuid.get(uuid)
            view = self._view_of(device, other) if other is not None else None
            state = (view or TunnelView()).snapshot(device, uuid, other)
            if state is not None:
                states.append(state)
        return states

    def started_utc(self, device_name: str) -> datetime:
        """When this device's sftunnel (re)started: `SFTUNNEL Start Time` in the status output."""
        self._device(device_name)
        return self._started.get(device_name, self._created_utc)

    async def restart(self, device_name: str) -> None:
        """`pmtool restartbyid sftunnel`: drop every tunnel of this device, then re-handshake each with the
        files on disk now (strictly); returns when each attempt finished. Failed ones stay down and retry."""
        device = self._device(device_name)
        async with self._restart_locks.setdefault(device_name, asyncio.Lock()):
            self._discover(only=device)
            self._started[device_name] = self._clock()
            mine = [t for t in self._tunnels.values() if device_name in (t.owner.name, t.peer.name)]
            await asyncio.gather(*(self._stop(t, log_drop=True) for t in mine))
            await asyncio.gather(*(self._start_connector(t, attempt_now=True, lenient=False) for t in mine))

    async def push(self, owner_name: str, peer_uuid: str, files: Mapping[str, bytes]) -> bool:
        """Send files over the live tunnel; True once the peer wrote them into its folder for the owner.

        False when the tunnel is down, drops meanwhile, or the peer refuses (a name outside PUSH_FILES).
        """
        peer = self._by_uuid.get(peer_uuid)
        tunnel = self._tunnels.get((owner_name, peer.name)) if peer is not None else None
        link = tunnel.link if tunnel is not None else None
        if link is None:
            return False
        return await self._sessions.push(link, files)

    def is_connected(self, owner_name: str, peer_name: str) -> bool:
        tunnel = self._tunnels.get((owner_name, peer_name))
        return tunnel is not None and tunnel.link is not None

    def attempts(self, owner_name: str, peer_name: str) -> int:
        """How many handshakes this tunnel has finished (either way) since the hub started."""
        tunnel = self._tunnels.get((owner_name, peer_name))
        return tunnel.attempts if tunnel is not None else 0

    async def wait_connected(self, owner_name: str, peer_name: str, *, connected: bool = True) -> None:
        """Return once the tunnel is up (down with `connected=False`): the readiness signal for retries."""
        await self._wait_until(lambda: self.is_connected(owner_name, peer_name) == connected)

    async def wait_attempts(self, owner_name: str, peer_name: str, count: int) -> None:
        """Return once the tunnel has finished `count` handshakes (see `attempts`), whatever their outcome."""
        await self._wait_until(lambda: self.attempts(owner_name, peer_name) >= count)

    async def _wait_until(self, condition: Callable[[], bool]) -> None:
        if condition():
            return
        entry = (condition, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            await entry[1]
        finally:
            self._waiters.remove(entry)

    async def close(self) -> None:
        """Stop every connector, tunnel, listener and handler; no task of the hub is left afterwards."""
        await asyncio.gather(*(self._stop(t, log_drop=False) for t in self._tunnels.values()))
        for server in self._servers.values():
            server.close()
        await self._handshakes.cancel_handlers()
        for server in self._servers.values():
            await server.wait_closed()
        self._servers.clear()
        # Aborted transports report connection_lost on the next loop iteration; let them finish here.
        await asyncio.sleep(0)

    # ---------------------------------------------------------------- discovery and states

    def _device(self, name: str) -> TunnelDevice:
        try:
            return self._devices[name]
        except KeyError:
            raise KeyError(f"no sftunnel device named {name!r}") from None

    def _discover(self, only: TunnelDevice | None = None) -> None:
        """Add a tunnel wherever an FMC holds a folder for a device, or a device holds one for an FMC.

        The second kind lets a peer the FMC has forgotten keep knocking, and be refused, as on a device.
        With `only`, just the tunnels of that device: its own folders, and the other side's folder for it
        (a restart needs no more, and a scan of every device's folders at every restart made a 300-FTD
        fan-out quadratic).
        """
        for device in self._devices.values() if only is None else (only,):
            for uuid in device.tree.peer_uuids():
                self._add_tunnel(device, self._by_uuid.get(uuid))
        if only is not None:
            for other in self._devices.values():
                if "fmc" in (other.tree.kind, only.tree.kind) and other.tree.holds_peer(only.uuid):
                    self._add_tunnel(other, only)

    def _add_tunnel(self, device: TunnelDevice, other: TunnelDevice | None) -> None:
        """The tunnel between `device` and `other`, owned by whichever is the FMC, if not yet known."""
        if other is None or other is device:
            return
        if device.tree.kind == "fmc":
            self._tunnels.setdefault((device.name, other.name), Tunnel(device, other))
        if other.tree.kind == "fmc":
            self._tunnels.setdefault((other.name, device.name), Tunnel(other, device))

    def _view_of(self, device: TunnelDevice, other: TunnelDevice) -> TunnelView | None:
        if device.tree.kind == "fmc":
            tunnel = self._tunnels.get((device.name, other.name))
            return tunnel.owner_view if tunnel is not None else None
        tunnel = self._tunnels.get((other.name, device.name))
        return tunnel.peer_view if tunnel is not None else None

    # ---------------------------------------------------------------- connectors

    def _start_connector(self, tunnel: Tunnel, *, attempt_now: bool, lenient: bool) -> asyncio.Future[None]:
        """Run the peer's connect-and-retry loop; the returned future resolves after its first attempt."""
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not attempt_now:
            first.set_result(None)
        tunnel.connector = asyncio.create_task(
            self._connector(tunnel, attempt_now=attempt_now, lenient=lenient, first=first),
            name=f"sftunnel {tunnel.peer.name} -> {tunnel.owner.name}",
        )
        return first

    async def _connector(
        self, tunnel: Tunnel, *, attempt_now: bool, lenient: bool, first: asyncio.Future[None]
    ) -> None:
        try:
            if not attempt_now:
                await asyncio.sleep(self._retry)
            while True:
                try:
                    link = await self._handshakes.attempt(tunnel, lenient=lenient)
                except Exception:  # a lab bug must not kill the retry loop silently
                    log.exception("sftunnel attempt %s -> %s crashed", tunnel.peer.name, tunnel.owner.name)
                    link = None
                _raise_if_cancelled()
                lenient = False
                tunnel.attempts += 1
                self._notify()
                settle(first, None)
                if link is not None and not link.closed:
                    await asyncio.wait(link.tasks)  # wait() (not gather) never cancels the link's tasks
                await asyncio.sleep(self._retry)
        finally:
            settle(first, None)

    def _notify(self) -> None:
        """Wake the waiters whose condition now holds (called whenever a tunnel's state changed)."""
        for condition, waiter in self._waiters:
            if not waiter.done() and condition():
                waiter.set_result(None)

    async def _stop(self, tunnel: Tunnel, *, log_drop: bool) -> None:
        """Cancel the tunnel's connector and drop its link; returns when none of their tasks runs any more."""
        connector, tunnel.connector = tunnel.connector, None
        if connector is not None:
            connector.cancel()
            await asyncio.gather(connector, return_exceptions=True)
        link = tunnel.link
        if link is not None:
            self._sessions.drop(link, log_drop=log_drop)
            await asyncio.gather(*link.tasks, return_exceptions=True)
