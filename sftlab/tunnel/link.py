"""Live sftunnel links: what each end of a tunnel knows, and the session both ends run after the handshake.

A session is the frames of `lab.tunnel_tls`: `hello` (uuid, name, sw_version, sw_build; also the first
heartbeat), `heartbeat` every interval, `push` (owner to peer: base64 files) answered by `push_ack`, and
`close`. A dead stream on either end drops both ends at once (the lab sees both), with the reason of
device-facts 2.2.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sftlab.fleet.layout import DeviceTree
from sftlab.tools.status_text import DOWN_REASON, PeerState
from sftlab.tunnel import messages
from sftlab.tunnel.files import peer_record, software, store_push, touch_heartbeat
from sftlab.tunnel.messages import MessagesLog
from sftlab.tunnel.tls import STEP_TIMEOUT, Streams, receive, send

__all__ = ["HubServices", "Link", "LinkEnd", "Sessions", "Tunnel", "TunnelDevice", "TunnelView", "settle"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TunnelDevice:
    name: str
    hostname: str
    uuid: str
    ip: str
    tree: DeviceTree


@dataclass(frozen=True)
class HubServices:
    """What attempts and sessions share with the hub: its clock, the devices' messages files (by device
    name), and `notify`, called whenever a tunnel's state changed."""

    clock: Callable[[], datetime]
    logs: Mapping[str, MessagesLog]
    notify: Callable[[], None]

    def log(self, device: TunnelDevice, entries: Sequence[messages.Entry]) -> None:
        try:
            self.logs[device.name].write(self.clock(), entries)
        except OSError:
            log.warning("cannot append to the messages file of %s", device.name, exc_info=True)


@dataclass(eq=False)
class TunnelView:
    """What one end knows about its tunnel; `snapshot` turns it into the PeerState of the status output."""

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

    def snapshot(self, device: TunnelDevice, uuid: str, other: TunnelDevice | None) -> PeerState | None:
        """This end as `sftunnel_status.pl` reports it on `device`, for the peer folder `uuid`. The peer's
        name, address and kind come from `other` (the hub's device), or from the peer record for a stranger's
        folder; None when neither is known."""
        record = peer_record(device.tree, uuid)
        if other is not None:
            name, ip, kind = other.name, other.ip, other.tree.kind
        elif record is not None:
            name, ip, kind = record.name, record.ip, record.kind
        else:
            return None
        remote = self.remote_software or ((record.sw_version, record.sw_build) if record else ("", ""))
        return PeerState(
            peer_uuid=uuid,
            peer_name=name,
            peer_ip=ip,
            local_ip=device.ip,
            connected=self.connected,
            cipher=self.cipher,
            bits=self.bits,
            start_time_utc=self.start_time_utc,
            last_attempt_utc=self.last_attempt_utc,
            last_disconnect_utc=self.last_disconnect_utc,
            last_disconnect_reason=self.last_disconnect_reason,
            heartbeat_sent_utc=self.heartbeat_sent_utc,
            heartbeat_received_utc=self.heartbeat_received_utc,
            peer_sw_version=remote[0],
            peer_sw_build=remote[1],
            peer_kind=kind,
        )


@dataclass(eq=False)
class LinkEnd:
    """One end of a live tunnel. `hello` resolves when the other end's hello arrived (or the link died)."""

    me: TunnelDevice
    other: TunnelDevice
    view: TunnelView
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    hello: asyncio.Future[None]
    acks: dict[int, asyncio.Future[bool]] = field(default_factory=dict)


@dataclass(eq=False)
class Link:
    tunnel: Tunnel
    owner_end: LinkEnd
    peer_end: LinkEnd
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closed: bool = False


@dataclass(eq=False)
class Tunnel:
    owner: TunnelDevice
    peer: TunnelDevice
    owner_view: TunnelView = field(default_factory=TunnelView)
    peer_view: TunnelView = field(default_factory=TunnelView)
    link: Link | None = None
    connector: asyncio.Task[None] | None = None
    attempts: int = 0


class Sessions:
    """The sessions of every live link; each end sends a heartbeat every `heartbeat_interval` seconds."""

    def __init__(self, services: HubServices, *, heartbeat_interval: float) -> None:
        self._services = services
        self._heartbeat = heartbeat_interval
        self._push_ids = itertools.count(1)

    async def establish(self, tunnel: Tunnel, peer_half: Streams, owner_half: Streams, port: int) -> Link:
        """Mark both ends up, start their sessions, and return once each has the other's hello."""
        now = self._services.clock()
        cipher, _, bits = peer_half[1].get_extra_info("cipher")
        loop = asyncio.get_running_loop()
        ends = []
        for me, other, view, (reader, writer) in (
            (tunnel.owner, tunnel.peer, tunnel.owner_view, owner_half),
            (tunnel.peer, tunnel.owner, tunnel.peer_view, peer_half),
        ):
            view.connected, view.cipher, view.bits, view.start_time_utc = True, cipher, bits, now
            view.heartbeat_sent_utc = view.heartbeat_received_utc = None
            ends.append(LinkEnd(me, other, view, reader, writer, loop.create_future()))
        link = Link(tunnel, ends[0], ends[1])
        tunnel.link = link
        for end in ends:
            link.tasks.append(asyncio.create_task(self._read_loop(link, end)))
            link.tasks.append(asyncio.create_task(self._heartbeats(link, end)))
        self._services.log(tunnel.owner, messages.owner_established(tunnel.peer.ip, tunnel.peer.uuid))
        self._services.log(tunnel.peer, messages.peer_established(tunnel.owner.ip, port, tunnel.owner.uuid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(end.hello for end in ends)), STEP_TIMEOUT)
        return link

    async def push(self, link: Link, files: Mapping[str, bytes]) -> bool:
        """Send files from the owner; True once the peer acknowledged writing them (see `store_push`)."""
        end = link.owner_end
        push_id = next(self._push_ids)
        ack: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        end.acks[push_id] = ack
        encoded = {name: base64.b64encode(data).decode("ascii") for name, data in files.items()}
        try:
            await send(end.writer, {"type": "push", "id": push_id, "files": encoded})
            return await asyncio.wait_for(ack, STEP_TIMEOUT)
        except (OSError, TimeoutError):
            return False
        finally:
            end.acks.pop(push_id, None)

    def drop(self, link: Link, *, log_drop: bool) -> None:
        """Both ends go down at once (the lab sees both), with a disconnect time and the reason of 2.2."""
        if link.closed:
            return
        link.closed = True
        if link.tunnel.link is link:
            link.tunnel.link = None
        now = self._services.clock()
        for end in (link.owner_end, link.peer_end):
            end.writer.transport.abort()
            end.view.connected, end.view.cipher, end.view.bits = False, None, 0
            end.view.last_disconnect_utc, end.view.last_disconnect_reason = now, DOWN_REASON
            settle(end.hello, None)
            for ack in end.acks.values():
                settle(ack, False)
            if log_drop:
                self._services.log(end.me, messages.went_down(end.other.ip, end.other.uuid, DOWN_REASON))
        current = asyncio.current_task()
        for task in link.tasks:
            if task is not current:
                task.cancel()
        self._services.notify()

    async def _heartbeats(self, link: Link, end: LinkEnd) -> None:
        """Say hello (which counts as the first heartbeat), then a heartbeat every interval."""
        message: dict[str, Any] = {"type": "hello", "uuid": end.me.uuid, "name": end.me.name}
        message.update(software(end.me.tree))
        try:
            while True:
                end.view.heartbeat_sent_utc = self._services.clock()
                await send(end.writer, message)
                message = {"type": "heartbeat"}
                await asyncio.sleep(self._heartbeat)
        except OSError:
            self.drop(link, log_drop=True)

    async def _read_loop(self, link: Link, end: LinkEnd) -> None:
        try:
            while True:
                message = await receive(end.reader)
                if message.get("type") == "close":
                    break
                await self._handle(link, end, message)
        except (OSError, EOFError, ValueError):
            pass
        self.drop(link, log_drop=True)

    async def _handle(self, link: Link, end: LinkEnd, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind in {"hello", "heartbeat"}:
            end.view.heartbeat_received_utc = self._services.clock()
            if end is link.peer_end:
                touch_heartbeat(end.me.tree, end.other.uuid)
        if kind == "hello":
            end.view.remote_software = (str(message.get("sw_version", "")), str(message.get("sw_build", "")))
            settle(end.hello, None)
        elif kind == "push":
            stored = end is link.peer_end and store_push(end.me.tree, end.other.uuid, message.get("files"))
            await send(end.writer, {"type": "push_ack", "id": message.get("id"), "ok": stored})
        elif kind == "push_ack":
            ack = end.acks.get(message.get("id", -1))
            if ack is not None:
                settle(ack, message.get("ok") is True)


def settle(future: asyncio.Future[Any], value: object) -> bool:
    """Resolve `future` unless it already is; True when this call resolved it."""
    if future.done():
        return False
    future.set_result(value)
    return True
