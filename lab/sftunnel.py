"""sftunnel between simulated devices: real mutual TLS 1.2 on loopback (device-facts 7.3 and 12).

A tunnel is (owner FMC, peer): the owner listens on its own loopback address, the peer connects from its own
address to the port in its `/var/sf/peers/<owner uuid>/sftunnel.json`. Both ends build their TLS context from
the files on disk at every handshake, so new certificates take effect on the next handshake and never on an
established tunnel (device-facts 3.1: `generate_certs.pl` leaves live tunnels up). A verification failure is
the real OpenSSL one, logged on both devices with the reason of the end that verified (`lab.messages`).

Every attempt is driven from the peer's side (the connector); the owner's accept handler only does its half of
the handshake and hands its streams over, so one coroutine sees both halves and finishes the attempt (logs,
state, session) before the readiness signals of `connect_all` and `restart` fire.

On the wire: frames of a 4-byte big-endian length and a JSON object: `hello` (uuid, name, sw_version,
sw_build; also the first heartbeat), `heartbeat`, `push` (owner to peer: base64 files) answered by `push_ack`,
and `close` (ends the session). A restart or the lab's stop drops both ends at once: the hub sees both.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import json
import logging
import ssl
import struct
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from lab import messages
from lab.layout import DeviceTree, PeerRecord, write_file_atomic
from lab.messages import AttemptFailure, MessagesLog
from lab.status_text import DOWN_REASON, PeerState

__all__ = ["NO_CHECK_TIME", "PUSH_FILES", "PeerState", "SftunnelHub", "TunnelDevice"]

log = logging.getLogger(__name__)

NO_CHECK_TIME = 0x200000  # OpenSSL's X509_V_FLAG_NO_CHECK_TIME (device-facts 12: tunnels that predate expiry)
CIPHER = "AES256-GCM-SHA384"
PUSH_FILES = frozenset({"cacert.pem", "sftunnel-cert.pem", "sftunnel-key.pem"})
_HEADER = struct.Struct("!I")
_MAX_FRAME = 1 << 20
# Bounds for steps that end on their own on loopback; they only keep a wedged lab from hanging for ever.
_STEP_TIMEOUT = 30.0
_BACKLOG = 1024

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TunnelDevice:
    name: str
    hostname: str
    uuid: str
    ip: str
    tree: DeviceTree


# ------------------------------------------------------------------ TLS and framing


def _base_context(protocol: ssl._SSLMethod, *, lenient: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(CIPHER)
    ctx.verify_mode = ssl.CERT_REQUIRED
    if lenient:
        ctx.verify_flags |= NO_CHECK_TIME
    return ctx


def _owner_context(tree: DeviceTree, *, lenient: bool) -> ssl.SSLContext:
    """The owner's side: `/etc/sf/keys` identity, `/etc/sf/ca_root` trust (sftunnel.conf's proxyssl block)."""
    ctx = _base_context(ssl.PROTOCOL_TLS_SERVER, lenient=lenient)
    ctx.load_cert_chain(tree.host_path(tree.SFTUNNEL_CERT), tree.host_path(tree.SFTUNNEL_KEY))
    ctx.load_verify_locations(cafile=tree.host_path(tree.CA_CERT))
    return ctx


def _peer_context(tree: DeviceTree, owner_uuid: str, *, lenient: bool) -> ssl.SSLContext:
    """The peer's side: everything from its folder for the owner. No hostname check: the CN is `localhost`."""
    folder = tree.host_path(tree.peer_dir(owner_uuid))
    ctx = _base_context(ssl.PROTOCOL_TLS_CLIENT, lenient=lenient)
    ctx.check_hostname = False
    ctx.load_cert_chain(folder / "sftunnel-cert.pem", folder / "sftunnel-key.pem")
    ctx.load_verify_locations(cafile=folder / "cacert.pem")
    return ctx


async def _send(writer: asyncio.StreamWriter, message: Mapping[str, Any]) -> None:
    data = json.dumps(message).encode("utf-8")
    writer.write(_HEADER.pack(len(data)) + data)
    await writer.drain()


async def _receive(reader: asyncio.StreamReader) -> dict[str, Any]:
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if size > _MAX_FRAME:
        raise ValueError(f"sftunnel frame of {size} bytes is too large")
    message = json.loads(await reader.readexactly(size))
    if not isinstance(message, dict):
        raise ValueError("an sftunnel frame must hold a JSON object")  # noqa: TRY004 (bad data, not a bad call)
    return message


def _reason(exc: BaseException | None) -> str:
    """A short OpenSSL-style text for a failure (`tlsv1 alert unknown ca`, `Connection refused`)."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _title(der: bytes | None) -> str:
    """The UUID an sftunnel certificate speaks for (its `title`); empty when absent."""
    if not der:
        return ""
    titles = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.TITLE)
    return str(titles[0].value) if titles else ""


def _software(tree: DeviceTree) -> dict[str, str]:
    try:
        conf = tree.read_ims_conf()
    except (OSError, ValueError):
        conf = {}
    return {"sw_version": conf.get("SWVERSION", ""), "sw_build": conf.get("SWBUILD", "")}


# ------------------------------------------------------------------ tunnel state


@dataclass(eq=False)
class _View:
    """What one end knows about its tunnel; `peer_states` snapshots it into a PeerState."""

    connected: bool = False
    cipher: str | None = None
    bits: int = 0
    start_time_utc: datetime | None = None
    last_attempt_utc: datetime | None = None
    last_disconnect_utc: datetime | None = None
    last_disconnect_reason: str | None = None
    heartbeat_sent_utc: datetime | None = None
    heartbeat_received_utc: datetime | None = None
    remote_software: tuple[str, str] | None = None


@dataclass(eq=False)
class _End:
    """One end of a live tunnel. `hello` resolves when the other end's hello arrived (or the link died)."""

    me: TunnelDevice
    other: TunnelDevice
    view: _View
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    hello: asyncio.Future[None]
    acks: dict[int, asyncio.Future[bool]] = field(default_factory=dict)


@dataclass(eq=False)
class _Link:
    tunnel: _Tunnel
    owner_end: _End
    peer_end: _End
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closed: bool = False


@dataclass(eq=False)
class _Tunnel:
    owner: TunnelDevice
    peer: TunnelDevice
    owner_view: _View = field(default_factory=_View)
    peer_view: _View = field(default_factory=_View)
    link: _Link | None = None
    connector: asyncio.Task[None] | None = None
    attempts: int = 0


@dataclass(eq=False)
class _Pending:
    """An attempt in flight, waiting for the owner's accept handler (found by the peer's source address)."""

    lenient: bool
    owner_half: asyncio.Future[Streams | BaseException]
    adopted: bool = False


# ------------------------------------------------------------------ the hub


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
        self._heartbeat = heartbeat_interval
        self._clock = clock
        self._logs = {
            d.name: MessagesLog(d.tree.host_path(d.tree.messages_log), hostname=d.hostname, uuid=d.uuid)
            for d in devices
        }
        self._servers: dict[str, asyncio.Server] = {}
        self._tunnels: dict[tuple[str, str], _Tunnel] = {}
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._handlers: set[asyncio.Task[Any]] = set()
        self._started: dict[str, datetime] = {}
        self._created_utc = clock()
        self._push_ids = itertools.count(1)
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    # ---------------------------------------------------------------- public API

    async def listen(self, fmc_name: str) -> int:
        """Bind the owner's TLS listener on its loopback address (port 0) and return the port it got."""
        device = self._device(fmc_name)
        if device.tree.kind != "fmc":
            raise ValueError(f"{fmc_name} is not an FMC: only FMCs own tunnels")
        if fmc_name not in self._servers:
            self._servers[fmc_name] = await asyncio.start_server(
                partial(self._accept, device), host=device.ip, port=0, backlog=_BACKLOG
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
            state = self._snapshot(device, uuid, other, view or _View())
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
        self._device(device_name)
        self._discover()
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
        end = link.owner_end
        push_id = next(self._push_ids)
        ack: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        end.acks[push_id] = ack
        encoded = {name: base64.b64encode(data).decode("ascii") for name, data in files.items()}
        try:
            await _send(end.writer, {"type": "push", "id": push_id, "files": encoded})
            return await asyncio.wait_for(ack, _STEP_TIMEOUT)
        except (OSError, TimeoutError):
            return False
        finally:
            end.acks.pop(push_id, None)

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
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
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

    def _discover(self) -> None:
        """Add a tunnel wherever an FMC holds a folder for a device, or a device holds one for an FMC.

        The second kind lets a peer the FMC has forgotten keep knocking, and be refused, as on a device.
        """
        for device in self._devices.values():
            for uuid in device.tree.peer_uuids():
                other = self._by_uuid.get(uuid)
                if other is None or other is device:
                    continue
                if device.tree.kind == "fmc":
                    self._tunnels.setdefault((device.name, other.name), _Tunnel(device, other))
                if other.tree.kind == "fmc":
                    self._tunnels.setdefault((other.name, device.name), _Tunnel(other, device))

    def _view_of(self, device: TunnelDevice, other: TunnelDevice) -> _View | None:
        if device.tree.kind == "fmc":
            tunnel = self._tunnels.get((device.name, other.name))
            return tunnel.owner_view if tunnel is not None else None
        tunnel = self._tunnels.get((other.name, device.name))
        return tunnel.peer_view if tunnel is not None else None

    def _snapshot(
        self, device: TunnelDevice, uuid: str, other: TunnelDevice | None, view: _View
    ) -> PeerState | None:
        """The peer's name, address and kind from the hub, or from the peer record for a stranger's folder."""
        record = _peer_record(device.tree, uuid)
        if other is not None:
            name, ip, kind = other.name, other.ip, other.tree.kind
        elif record is not None:
            name, ip, kind = record.name, record.ip, record.kind
        else:
            return None
        software = view.remote_software or ((record.sw_version, record.sw_build) if record else ("", ""))
        return PeerState(
            peer_uuid=uuid,
            peer_name=name,
            peer_ip=ip,
            local_ip=device.ip,
            connected=view.connected,
            cipher=view.cipher,
            bits=view.bits,
            start_time_utc=view.start_time_utc,
            last_attempt_utc=view.last_attempt_utc,
            last_disconnect_utc=view.last_disconnect_utc,
            last_disconnect_reason=view.last_disconnect_reason,
            heartbeat_sent_utc=view.heartbeat_sent_utc,
            heartbeat_received_utc=view.heartbeat_received_utc,
            peer_sw_version=software[0],
            peer_sw_build=software[1],
            peer_kind=kind,
        )

    # ---------------------------------------------------------------- attempts

    def _start_connector(self, tunnel: _Tunnel, *, attempt_now: bool, lenient: bool) -> asyncio.Future[None]:
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
        self, tunnel: _Tunnel, *, attempt_now: bool, lenient: bool, first: asyncio.Future[None]
    ) -> None:
        try:
            if not attempt_now:
                await asyncio.sleep(self._retry)
            while True:
                try:
                    link = await self._attempt(tunnel, lenient=lenient)
                except Exception:  # a lab bug must not kill the retry loop silently
                    log.exception("sftunnel attempt %s -> %s crashed", tunnel.peer.name, tunnel.owner.name)
                    link = None
                lenient = False
                tunnel.attempts += 1
                self._notify()
                _settle(first, None)
                if link is not None and not link.closed:
                    await asyncio.wait(link.tasks)  # wait() (not gather) never cancels the link's tasks
                await asyncio.sleep(self._retry)
        finally:
            _settle(first, None)

    async def _attempt(self, tunnel: _Tunnel, *, lenient: bool) -> _Link | None:
        """One handshake, both halves; logs on both devices. Returns the live link, or None when it failed."""
        owner, peer = tunnel.owner, tunnel.peer
        tunnel.owner_view.last_attempt_utc = tunnel.peer_view.last_attempt_utc = self._clock()
        port = _owner_port(peer.tree, owner.uuid)
        pending = _Pending(lenient, asyncio.get_running_loop().create_future())
        key = (owner.name, peer.ip)
        self._pending[key] = pending
        try:
            peer_half, reached = await self._connect(tunnel, port, lenient=lenient)
            owner_half: Streams | BaseException | None = None
            if reached:
                try:
                    owner_half = await asyncio.wait_for(asyncio.shield(pending.owner_half), _STEP_TIMEOUT)
                except TimeoutError as exc:
                    owner_half = exc
            verdict = self._judge(tunnel, peer_half, owner_half, reached=reached)
            if isinstance(verdict, AttemptFailure):
                self._log(peer, messages.peer_failed(owner.ip, port or 0, verdict))
                if reached:
                    self._log(owner, messages.owner_failed(peer.ip, verdict))
                _abort(peer_half, owner_half)
                return None
            pending.adopted = True
            return await self._establish(tunnel, *verdict, port or 0)
        finally:
            if self._pending.get(key) is pending:
                del self._pending[key]
            _release(pending)

    async def _connect(
        self, tunnel: _Tunnel, port: int | None, *, lenient: bool
    ) -> tuple[Streams | BaseException, bool]:
        """The peer's half: TCP from its own address, then TLS. The flag says whether TCP got through."""
        if port is None:
            return FileNotFoundError(f"no sftunnel port for peer {tunnel.owner.uuid}"), False
        try:
            reader, writer = await asyncio.open_connection(
                tunnel.owner.ip, port, local_addr=(tunnel.peer.ip, 0)
            )
        except OSError as exc:
            return exc, False
        try:
            ctx = _peer_context(tunnel.peer.tree, tunnel.owner.uuid, lenient=lenient)
            await asyncio.wait_for(writer.start_tls(ctx), _STEP_TIMEOUT)
        except (OSError, ValueError, TimeoutError) as exc:
            writer.transport.abort()
            return exc, True
        return (reader, writer), True

    async def _accept(
        self, owner: TunnelDevice, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """The owner's half: TLS with its files of now; the attempt that connected takes it from here."""
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            pending = self._pending.get((owner.name, writer.get_extra_info("peername")[0]))
            if pending is None or pending.owner_half.done():
                writer.transport.abort()
                return
            try:
                ctx = _owner_context(owner.tree, lenient=pending.lenient)
                await asyncio.wait_for(writer.start_tls(ctx), _STEP_TIMEOUT)
            except (OSError, ValueError, TimeoutError) as exc:
                writer.transport.abort()
                _settle(pending.owner_half, exc)
                return
            if not _settle(pending.owner_half, (reader, writer)):
                writer.transport.abort()
        finally:
            if task is not None:
                self._handlers.discard(task)

    def _judge(
        self,
        tunnel: _Tunnel,
        peer_half: Streams | BaseException,
        owner_half: Streams | BaseException | None,
        *,
        reached: bool,
    ) -> AttemptFailure | tuple[Streams, Streams]:
        """Both halves of a good handshake, or why it failed.

        A refused certificate wins over every other error: only the end that refused it knows the real reason
        (the other end sees a reset or an alert).
        """
        if not reached:
            return AttemptFailure(
                "connect", _reason(peer_half if isinstance(peer_half, BaseException) else None)
            )
        folder = tunnel.peer.tree.host_path(tunnel.peer.tree.peer_dir(tunnel.owner.uuid))
        owner_tree = tunnel.owner.tree
        owner_ca = owner_tree.host_path(owner_tree.CA_CERT)
        if isinstance(peer_half, ssl.SSLCertVerificationError):
            owner_cert = owner_tree.host_path(owner_tree.SFTUNNEL_CERT)
            return _cert_failure(peer_half, leaf=owner_cert, ca=owner_ca, anchor=folder / "cacert.pem")
        if isinstance(owner_half, ssl.SSLCertVerificationError):
            peer_cert, peer_ca = folder / "sftunnel-cert.pem", folder / "cacert.pem"
            return _cert_failure(owner_half, leaf=peer_cert, ca=peer_ca, anchor=owner_ca)
        if not isinstance(peer_half, tuple):
            return AttemptFailure("handshake", _reason(peer_half))
        if not isinstance(owner_half, tuple):
            return AttemptFailure("handshake", _reason(owner_half))
        return self._identify(tunnel, owner_half) or (peer_half, owner_half)

    def _identify(self, tunnel: _Tunnel, owner_half: Streams) -> AttemptFailure | None:
        """The owner knows its peer by the client certificate's title, accepting only peers with a folder."""
        ssl_object = owner_half[1].get_extra_info("ssl_object")
        title = _title(ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None)
        try:
            folder = tunnel.owner.tree.peer_dir(title)
        except ValueError:
            return AttemptFailure("rejected", f"client certificate has no usable title ({title!r})")
        if not tunnel.owner.tree.host_path(folder).is_dir():
            return AttemptFailure("rejected", f"unknown peer {title}: no {folder}")
        if title != tunnel.peer.uuid:
            return AttemptFailure("rejected", f"certificate of {title} presented by {tunnel.peer.ip}")
        return None

    async def _establish(self, tunnel: _Tunnel, peer_half: Streams, owner_half: Streams, port: int) -> _Link:
        """Mark both ends up, start their sessions, and return once each has the other's hello."""
        now = self._clock()
        cipher, _, bits = peer_half[1].get_extra_info("cipher")
        loop = asyncio.get_running_loop()
        ends = []
        for me, other, view, (reader, writer) in (
            (tunnel.owner, tunnel.peer, tunnel.owner_view, owner_half),
            (tunnel.peer, tunnel.owner, tunnel.peer_view, peer_half),
        ):
            view.connected, view.cipher, view.bits, view.start_time_utc = True, cipher, bits, now
            view.heartbeat_sent_utc = view.heartbeat_received_utc = None
            ends.append(_End(me, other, view, reader, writer, loop.create_future()))
        link = _Link(tunnel, ends[0], ends[1])
        tunnel.link = link
        for end in ends:
            link.tasks.append(asyncio.create_task(self._read_loop(link, end)))
            link.tasks.append(asyncio.create_task(self._heartbeats(link, end)))
        self._log(tunnel.owner, messages.owner_established(tunnel.peer.ip, tunnel.peer.uuid))
        self._log(tunnel.peer, messages.peer_established(tunnel.owner.ip, port, tunnel.owner.uuid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(end.hello for end in ends)), _STEP_TIMEOUT)
        return link

    # ---------------------------------------------------------------- live sessions

    async def _heartbeats(self, link: _Link, end: _End) -> None:
        """Say hello (which counts as the first heartbeat), then a heartbeat every interval."""
        message: dict[str, Any] = {"type": "hello", "uuid": end.me.uuid, "name": end.me.name}
        message.update(_software(end.me.tree))
        try:
            while True:
                end.view.heartbeat_sent_utc = self._clock()
                await _send(end.writer, message)
                message = {"type": "heartbeat"}
                await asyncio.sleep(self._heartbeat)
        except OSError:
            self._drop(link, log_drop=True)

    async def _read_loop(self, link: _Link, end: _End) -> None:
        try:
            while True:
                message = await _receive(end.reader)
                if message.get("type") == "close":
                    break
                await self._handle(link, end, message)
        except (OSError, EOFError, ValueError):
            pass
        self._drop(link, log_drop=True)

    async def _handle(self, link: _Link, end: _End, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind in {"hello", "heartbeat"}:
            end.view.heartbeat_received_utc = self._clock()
            if end is link.peer_end:
                _touch_heartbeat(end.me.tree, end.other.uuid)
        if kind == "hello":
            end.view.remote_software = (str(message.get("sw_version", "")), str(message.get("sw_build", "")))
            _settle(end.hello, None)
        elif kind == "push":
            stored = end is link.peer_end and _store_push(end.me.tree, end.other.uuid, message.get("files"))
            await _send(end.writer, {"type": "push_ack", "id": message.get("id"), "ok": stored})
        elif kind == "push_ack":
            ack = end.acks.get(message.get("id", -1))
            if ack is not None:
                _settle(ack, message.get("ok") is True)

    def _drop(self, link: _Link, *, log_drop: bool) -> None:
        """Both ends go down at once (the lab sees both), with a disconnect time and the reason of 2.2."""
        if link.closed:
            return
        link.closed = True
        if link.tunnel.link is link:
            link.tunnel.link = None
        now = self._clock()
        for end in (link.owner_end, link.peer_end):
            end.writer.transport.abort()
            end.view.connected, end.view.cipher, end.view.bits = False, None, 0
            end.view.last_disconnect_utc, end.view.last_disconnect_reason = now, DOWN_REASON
            _settle(end.hello, None)
            for ack in end.acks.values():
                _settle(ack, False)
            if log_drop:
                self._log(end.me, messages.went_down(end.other.ip, end.other.uuid, DOWN_REASON))
        current = asyncio.current_task()
        for task in link.tasks:
            if task is not current:
                task.cancel()
        self._notify()

    def _notify(self) -> None:
        """Wake the waiters whose condition now holds (called whenever a tunnel's state changed)."""
        for condition, waiter in self._waiters:
            if not waiter.done() and condition():
                waiter.set_result(None)

    async def _stop(self, tunnel: _Tunnel, *, log_drop: bool) -> None:
        """Cancel the tunnel's connector and drop its link; returns when none of their tasks runs any more."""
        connector, tunnel.connector = tunnel.connector, None
        if connector is not None:
            connector.cancel()
            await asyncio.gather(connector, return_exceptions=True)
        link = tunnel.link
        if link is not None:
            self._drop(link, log_drop=log_drop)
            await asyncio.gather(*link.tasks, return_exceptions=True)

    def _log(self, device: TunnelDevice, entries: Sequence[messages.Entry]) -> None:
        try:
            self._logs[device.name].write(self._clock(), entries)
        except OSError:
            log.warning("cannot append to the messages file of %s", device.name, exc_info=True)


# ------------------------------------------------------------------ helpers of the hub


def _owner_port(tree: DeviceTree, owner_uuid: str) -> int | None:
    record = _peer_record(tree, owner_uuid)
    return record.sftunnel_port if record is not None else None


def _peer_record(tree: DeviceTree, uuid: str) -> PeerRecord | None:
    try:
        return tree.read_peer_record(uuid)
    except (OSError, ValueError):
        return None


def _cert_failure(exc: ssl.SSLCertVerificationError, *, leaf: Path, ca: Path, anchor: Path) -> AttemptFailure:
    """Locate the refused certificate. The other end sent its certificate (`leaf`) and, as OpenSSL does by
    default, its CA (`ca`) when that issued it; the verifier trusts `anchor`. OpenSSL judged with the real
    time, so the diagnosis does too."""
    code, message = int(exc.verify_code), str(exc.verify_message)
    presented = [cert for cert in (_load_cert(leaf), _load_cert(ca)) if cert is not None]
    if len(presented) == 2 and not _issued_by(presented[0], presented[1]):
        presented = presented[:1]
    cert = messages.locate_failure(
        code, message, chain=presented, anchor=_load_cert(anchor), now_utc=datetime.now(UTC)
    )
    return AttemptFailure("handshake", message, cert)


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _settle(future: asyncio.Future[Any], value: object) -> bool:
    if future.done():
        return False
    future.set_result(value)
    return True


def _abort(*halves: Streams | BaseException | None) -> None:
    for half in halves:
        if isinstance(half, tuple):
            half[1].transport.abort()


def _release(pending: _Pending) -> None:
    """Close an owner half nobody took (the attempt failed or was cancelled) and end the wait for it."""
    if not pending.owner_half.done():
        pending.owner_half.cancel()
    elif not pending.owner_half.cancelled() and not pending.adopted:
        _abort(pending.owner_half.result())


def _touch_heartbeat(tree: DeviceTree, owner_uuid: str) -> None:
    """The 1-byte `sftunnel-heartbeat` file whose mtime follows the heartbeats (device-facts 5.2, ASSUMED)."""
    with contextlib.suppress(OSError, ValueError):
        (tree.host_path(tree.peer_dir(owner_uuid)) / "sftunnel-heartbeat").write_bytes(b"1")


def _store_push(tree: DeviceTree, owner_uuid: str, files: object) -> bool:
    """Write pushed files into the folder for the owner, atomically and 0644; all or none are accepted."""
    if not isinstance(files, dict) or not files or not set(files) <= PUSH_FILES:
        return False
    try:
        decoded = {str(name): base64.b64decode(str(data), validate=True) for name, data in files.items()}
        folder = tree.host_path(tree.peer_dir(owner_uuid))
        for name, data in sorted(decoded.items()):
            write_file_atomic(folder / name, data, 0o644)
    except (OSError, ValueError, binascii.Error):
        return False
    return True
