"""One sftunnel handshake, both halves, judged in one place (device-facts 7.3 and 12).

Every attempt is driven from the peer's side (the connector); the owner's accept handler only does its half of
the handshake and hands its streams over, so one coroutine sees both halves and finishes the attempt (logs,
state, session) before anyone waiting on it is told. A verification failure is the real OpenSSL one, logged
on both devices with the reason of the end that verified.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from sftlab.tunnel import messages
from sftlab.tunnel.files import owner_port
from sftlab.tunnel.link import HubServices, Link, Sessions, Tunnel, TunnelDevice, settle
from sftlab.tunnel.messages import AttemptFailure
from sftlab.tunnel.tls import (
    STEP_TIMEOUT,
    Streams,
    cert_failure,
    cert_title,
    owner_context,
    peer_context,
    reason,
)

__all__ = ["Handshakes"]


@dataclass(eq=False)
class _Pending:
    """An attempt in flight, waiting for the owner's accept handler (found by the peer's source address)."""

    lenient: bool
    owner_half: asyncio.Future[Streams | BaseException]
    adopted: bool = False


class Handshakes:
    """The attempts in flight and the owners' accept handlers; a good handshake becomes a session."""

    def __init__(self, services: HubServices, sessions: Sessions) -> None:
        self._services = services
        self._sessions = sessions
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._handlers: set[asyncio.Task[object]] = set()

    async def attempt(self, tunnel: Tunnel, *, lenient: bool) -> Link | None:
        """One handshake, both halves; logs on both devices. Returns the live link, or None when it failed."""
        owner, peer = tunnel.owner, tunnel.peer
        tunnel.owner_view.last_attempt_utc = tunnel.peer_view.last_attempt_utc = self._services.clock()
        port = owner_port(peer.tree, owner.uuid)
        pending = _Pending(lenient, asyncio.get_running_loop().create_future())
        key = (owner.name, peer.ip)
        self._pending[key] = pending
        try:
            peer_half, reached = await _connect(tunnel, port, lenient=lenient)
            owner_half: Streams | BaseException | None = None
            if reached:
                try:
                    owner_half = await asyncio.wait_for(asyncio.shield(pending.owner_half), STEP_TIMEOUT)
                except TimeoutError as exc:
                    owner_half = exc
            verdict = _judge(tunnel, peer_half, owner_half, reached=reached)
            if isinstance(verdict, AttemptFailure):
                self._services.log(peer, messages.peer_failed(owner.ip, port or 0, verdict))
                if reached:
                    self._services.log(owner, messages.owner_failed(peer.ip, verdict))
                _abort(peer_half, owner_half)
                return None
            pending.adopted = True
            return await self._sessions.establish(tunnel, *verdict, port or 0)
        finally:
            if self._pending.get(key) is pending:
                del self._pending[key]
            _release(pending)

    async def accept(
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
                ctx = owner_context(owner.tree, lenient=pending.lenient)
                await asyncio.wait_for(writer.start_tls(ctx), STEP_TIMEOUT)
            except (OSError, ValueError, TimeoutError) as exc:
                writer.transport.abort()
                settle(pending.owner_half, exc)
                return
            if not settle(pending.owner_half, (reader, writer)):
                writer.transport.abort()
        finally:
            if task is not None:
                self._handlers.discard(task)

    async def cancel_handlers(self) -> None:
        """Cancel the accept handlers still running; returns when none runs any more."""
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)


async def _connect(
    tunnel: Tunnel, port: int | None, *, lenient: bool
) -> tuple[Streams | BaseException, bool]:
    """The peer's half: TCP from its own address, then TLS. The flag says whether TCP got through."""
    if port is None:
        return FileNotFoundError(f"no sftunnel port for peer {tunnel.owner.uuid}"), False
    try:
        reader, writer = await asyncio.open_connection(tunnel.owner.ip, port, local_addr=(tunnel.peer.ip, 0))
    except OSError as exc:
        return exc, False
    try:
        ctx = peer_context(tunnel.peer.tree, tunnel.owner.uuid, lenient=lenient)
        await asyncio.wait_for(writer.start_tls(ctx), STEP_TIMEOUT)
    except (OSError, ValueError, TimeoutError) as exc:
        writer.transport.abort()
        return exc, True
    return (reader, writer), True


def _judge(
    tunnel: Tunnel,
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
        return AttemptFailure("connect", reason(peer_half if isinstance(peer_half, BaseException) else None))
    folder = tunnel.peer.tree.host_path(tunnel.peer.tree.peer_dir(tunnel.owner.uuid))
    owner_tree = tunnel.owner.tree
    owner_ca = owner_tree.host_path(owner_tree.CA_CERT)
    if isinstance(peer_half, ssl.SSLCertVerificationError):
        owner_cert = owner_tree.host_path(owner_tree.SFTUNNEL_CERT)
        return cert_failure(peer_half, leaf=owner_cert, ca=owner_ca, anchor=folder / "cacert.pem")
    if isinstance(owner_half, ssl.SSLCertVerificationError):
        peer_cert, peer_ca = folder / "sftunnel-cert.pem", folder / "cacert.pem"
        return cert_failure(owner_half, leaf=peer_cert, ca=peer_ca, anchor=owner_ca)
    if not isinstance(peer_half, tuple):
        return AttemptFailure("handshake", reason(peer_half))
    if not isinstance(owner_half, tuple):
        return AttemptFailure("handshake", reason(owner_half))
    return _identify(tunnel, owner_half) or (peer_half, owner_half)


def _identify(tunnel: Tunnel, owner_half: Streams) -> AttemptFailure | None:
    """The owner knows its peer by the client certificate's title, accepting only peers with a folder."""
    ssl_object = owner_half[1].get_extra_info("ssl_object")
    title = cert_title(ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None)
    try:
        folder = tunnel.owner.tree.peer_dir(title)
    except ValueError:
        return AttemptFailure("rejected", f"client certificate has no usable title ({title!r})")
    if not tunnel.owner.tree.host_path(folder).is_dir():
        return AttemptFailure("rejected", f"unknown peer {title}: no {folder}")
    if title != tunnel.peer.uuid:
        return AttemptFailure("rejected", f"certificate of {title} presented by {tunnel.peer.ip}")
    return None


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
