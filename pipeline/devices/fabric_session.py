"""The real `DeviceSession`: Fabric/paramiko to an FMC or FTD, one interactive shell climbed to root.

The only module that imports fabric or paramiko (ruff TID251). Fabric's defaults are overridden every time
(STYLE lesson 2): host keys are checked against a known_hosts file with paramiko's RejectPolicy (trust on
first use only when settings say so; a changed key is always refused), every wait has a timeout, no OpenSSH
config is read unless settings name one, and the jump route goes through `gateway=`. The login to a jump
server is bounded per jump server and tried again when the jump server dropped it before its banner
(`jump_logins`).

This module connects and moves the shell's bytes; the climb to root, framed commands and file transfer are
`root_shell.RootShell`'s (with the secrets rules its docstring states). A session is used by one thread at
a time.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

import fabric
import paramiko
from pydantic import SecretStr

from pipeline.devices import jump_logins, shells
from pipeline.devices.known_hosts import append_host_key, check_known_hosts
from pipeline.devices.root_shell import RootShell
from pipeline.devices.session import Route
from pipeline.errors import (
    AuthenticationFailedError,
    ConfigError,
    DeviceError,
    DeviceUnreachableError,
    HostKeyRejectedError,
)
from pipeline.settings import SshSettings

log = logging.getLogger(__name__)


TERMINAL_WIDTH = 1024


@dataclass(frozen=True)
class Login:
    """Where and as whom to log in: a device or a jump server, by its inventory name."""

    name: str
    host: str
    port: int
    username: str
    password: SecretStr


# ---------------------------------------------------------------- host keys


class _UnknownHostKeyError(paramiko.SSHException):
    """Raised by the host-key policy, so an unknown key is told apart from other SSH errors."""


class _RejectUnknown(paramiko.RejectPolicy):
    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> NoReturn:
        raise _UnknownHostKeyError(f"{hostname} is not in known_hosts")


class _TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    """Accept an unknown key and append it to the known_hosts file (a changed key never reaches a policy:
    paramiko raises BadHostKeyException for it)."""

    def __init__(self, known_hosts: Path) -> None:
        self._path = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        append_host_key(self._path, hostname, key.get_name(), key.get_base64())
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.warning(
            "trusted on first use: %s %s %s, recorded in %s",
            hostname,
            key.get_name(),
            key.fingerprint,
            self._path,
        )


@dataclass(frozen=True)
class _ParsedKnownHosts:
    sha256: bytes  # of the file's content: a file whose bytes changed is checked and parsed again
    keys: paramiko.HostKeys


_parsed: dict[Path, _ParsedKnownHosts] = {}
_parsed_lock = threading.Lock()


def _known_keys(known_hosts: Path, *, tofu: bool) -> paramiko.HostKeys:
    """The known_hosts file checked (`check_known_hosts`) and parsed, once per content. With a line per
    device, parsing the whole file for every session cost half of a push's CPU in the worker at 300 FTDs;
    reading and digesting it costs microseconds. A file that changes (trust on first use appends to it, an
    operator edits it) is checked and parsed again, however quickly and whatever its size."""
    try:
        raw = known_hosts.read_bytes()
    except FileNotFoundError:
        check_known_hosts(known_hosts, tofu=tofu)  # a ConfigError unless trust on first use makes the file
        with contextlib.suppress(FileExistsError):
            known_hosts.touch(mode=0o644, exist_ok=False)
        raw = known_hosts.read_bytes()
    digest = hashlib.sha256(raw).digest()
    with _parsed_lock:
        found = _parsed.get(known_hosts)
        if found is None or found.sha256 != digest:
            # A file that went bad after start-up checks is a ConfigError naming its line, not a traceback.
            check_known_hosts(known_hosts, tofu=tofu)
            keys = paramiko.HostKeys()
            keys.load(str(known_hosts))
            found = _ParsedKnownHosts(digest, keys)
            _parsed[known_hosts] = found
    return found.keys


def _check_host_keys(client: paramiko.SSHClient, login: Login, known_hosts: Path, *, tofu: bool) -> None:
    """Give the client the keys known for this host (as paramiko names it: `host`, or `[host]:port`) and the
    policy for a host it does not know."""
    try:
        known = _known_keys(known_hosts, tofu=tofu)
    except OSError as exc:
        raise ConfigError(f"cannot use the known_hosts file {known_hosts}: {exc.strerror}") from None
    name = login.host if login.port == paramiko.config.SSH_PORT else f"[{login.host}]:{login.port}"
    own = client.get_host_keys()
    for key_type, key in (known.lookup(name) or {}).items():
        own.add(name, key_type, key)
    client.set_missing_host_key_policy(_TrustOnFirstUse(known_hosts) if tofu else _RejectUnknown())


# ---------------------------------------------------------------- connecting


def _fabric_config(ssh: SshSettings) -> fabric.Config:
    # lazy: no /etc/fabric.yaml, ~/.fabric.yaml or env vars; SSH configs only when settings name a file.
    config = fabric.Config(
        lazy=True,
        runtime_ssh_path=str(ssh.ssh_config) if ssh.ssh_config else None,
        overrides={"load_ssh_configs": ssh.ssh_config is not None, "timeouts": {"connect": None}},
    )
    try:
        config.load_ssh_config()
    except OSError as exc:
        what = f"cannot read the SSH config {ssh.ssh_config}: {exc.strerror}"
        raise ConfigError(f"{what}; fix SFTRENEW_SSH_CONFIG") from None
    return config


def _connection(
    login: Login, ssh: SshSettings, known_hosts: Path, gateway: fabric.Connection | None
) -> fabric.Connection:
    conn = fabric.Connection(
        login.host,
        user=login.username,
        port=login.port,
        config=_fabric_config(ssh),
        # False, not None: None lets Fabric build ProxyJump hops from an ssh_config itself, with AutoAddPolicy
        # and no timeouts. Routes come from the inventory only.
        gateway=gateway if gateway is not None else False,
        forward_agent=False,
        # Fabric int()s this, so 0.5 s would mean "no timeout": round up to whole seconds.
        connect_timeout=max(1, math.ceil(ssh.connect_timeout)),
        connect_kwargs={
            "password": login.password.get_secret_value(),
            "banner_timeout": ssh.banner_timeout,
            "auth_timeout": ssh.auth_timeout,
            "channel_timeout": ssh.connect_timeout,  # bounds the jump server's direct-tcpip open
            "allow_agent": False,
            "look_for_keys": False,
        },
    )
    _check_host_keys(conn.client, login, known_hosts, tofu=ssh.trust_on_first_use)
    return conn


@dataclass(frozen=True)
class _Where:
    """What a connection error is about: the device and route it is reported under, and which hop failed.

    A login refused by the jump server itself (its host key, its credential) is the jump server's refusal, not
    the device's: it is reported under the jump server's name (`refused_by`), so that callers can tell it from
    the device's own (validate does not take it for the device's; each refusal counts towards the lockout of
    the host that refused)."""

    device: str
    route: str
    hop: Login
    known_hosts: Path
    via: str = ""
    refused_by: str | None = None

    def error(self, exc: BaseException) -> DeviceError:
        """The DeviceError an exception from connecting means (precise mapping; see the module docstring)."""
        refused_by = self.refused_by or self.device
        if isinstance(exc, paramiko.BadHostKeyException | _UnknownHostKeyError):
            changed = isinstance(exc, paramiko.BadHostKeyException)
            return HostKeyRejectedError(refused_by, self.route, str(self.known_hosts), changed=changed)
        if isinstance(exc, paramiko.AuthenticationException):
            user = self.hop.username if not self.via else f"{self.hop.username}@{self.hop.name}"
            return AuthenticationFailedError(refused_by, self.route, user)
        if isinstance(exc, paramiko.SSHException) and closed_before_banner(exc, banner_seen=False):
            target = f"{self.hop.host}:{self.hop.port}"
            why = f"{target} closed the connection before its SSH banner (as an sshd past MaxStartups does)"
            return DeviceUnreachableError(self.device, self.route, self.via + why)
        return DeviceUnreachableError(self.device, self.route, self.via + _reason(exc, self.hop))


_BANNER_ERROR = "Error reading SSH protocol banner"
_RESET = ConnectionResetError | ConnectionAbortedError | BrokenPipeError


def closed_before_banner(exc: BaseException, *, banner_seen: bool) -> bool:
    """Whether a login failed because the server closed the connection before its SSH banner: what sshd
    does past `MaxStartups`, and so worth another try. paramiko reports it as "Error reading SSH protocol
    banner" after an end of file or a reset (the same words after a banner that did not come in time, which
    is not this: that wait was spent already), or as an EOFError or a reset while still writing its own
    version. Once the server's banner came (`banner_seen`), a failure is something else, as is a refused
    credential or host key (each counts towards an AAA lockout) or a connection refused or timed out."""
    if banner_seen or isinstance(exc, paramiko.AuthenticationException | paramiko.BadHostKeyException):
        return False
    if isinstance(exc, paramiko.SSHException):
        cause = exc.__cause__ or exc.__context__
        return str(exc).startswith(_BANNER_ERROR) and isinstance(cause, EOFError | _RESET)
    return isinstance(exc, EOFError | _RESET)


def _banner_seen(conn: fabric.Connection) -> bool:
    transport = conn.client.get_transport()
    return transport is not None and bool(transport.remote_version)


def _reason(exc: BaseException, hop: Login) -> str:
    target = f"{hop.host}:{hop.port}"
    if isinstance(exc, paramiko.ChannelException):
        return f"the jump server could not open a connection to {target} ({exc.text})"
    if isinstance(exc, TimeoutError):
        return f"no answer from {target} (timed out)"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return f"connection to {target} refused or no route to host"
    if isinstance(exc, OSError):
        return f"cannot connect to {target}: {exc.strerror or type(exc).__name__}"
    if isinstance(exc, EOFError):
        return f"{target} closed the connection during the SSH handshake"
    return f"SSH to {target} failed: {exc}"


@contextlib.contextmanager
def _mapped(where: _Where) -> Iterator[None]:
    try:
        yield
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise where.error(exc) from None


def _watchdog(seconds: float, on_expiry: Callable[[], object]) -> threading.Timer:
    """Calls `on_expiry` (closing the transport) if a step paramiko gives no timeout of its own hangs."""
    timer = threading.Timer(seconds, on_expiry)
    timer.daemon = True
    timer.start()
    return timer


# ---------------------------------------------------------------- the session


class FabricSession(RootShell):
    """A root shell on one FMC or FTD. Open it with `FabricSession.open`; close it with `close()`."""

    def __init__(
        self,
        device: Login,
        route: Route,
        conn: fabric.Connection,
        gateway: fabric.Connection | None,
        ssh: SshSettings,
        sudo_password: SecretStr,
    ) -> None:
        super().__init__(
            device.name,
            route,
            ssh,
            username=device.username,
            sudo_password=sudo_password,
            passwords=(device.password, sudo_password),
        )
        self._login = device
        self._conn = conn
        self._gateway = gateway
        self._channel: paramiko.Channel | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._abandoned = False

    @classmethod
    def open(
        cls,
        device: Login,
        *,
        route: Route,
        ssh: SshSettings,
        known_hosts: Path,
        jump: Login | None = None,
        sudo_password: SecretStr | None = None,
    ) -> FabricSession:
        """Connect (through `jump` for a jump route), open one shell and climb to root.

        `sudo_password` is the login password unless given: on the devices we know `sudo su` asks for the
        admin's own password (device-facts 1.1). Raises DeviceUnreachableError, AuthenticationFailedError
        (login or sudo), HostKeyRejectedError, UnexpectedShellError, ConfigError (known_hosts unreadable).
        """
        if (route.kind == "jump") != (jump is not None):
            raise ValueError(f"route {route} needs {'a' if route.kind == 'jump' else 'no'} jump server login")
        gateway = _connection(jump, ssh, known_hosts, None) if jump is not None else None
        conn = _connection(device, ssh, known_hosts, gateway)
        session = cls(device, route, conn, gateway, ssh, sudo_password or device.password)
        if jump is not None:
            session._secrets.append(jump.password.get_secret_value())
        try:
            session._connect(known_hosts, jump)
            session._climb()
        except BaseException:
            session._abandon()
            raise
        return session

    # ------------------------------------------------------------ opening

    def _connect(self, known_hosts: Path, jump: Login | None) -> None:
        route = str(self._route)
        log.debug("connecting to %s (%s:%s, %s)", self.device, self._login.host, self._login.port, route)
        # Errors name the address really dialled (a named ssh_config may set HostName).
        device = replace(self._login, host=self._conn.host, port=self._conn.port)
        if jump is not None and self._gateway is not None:
            gateway = self._gateway
            hop = replace(jump, host=gateway.host, port=gateway.port)
            where = _Where(self.device, route, hop, known_hosts, f"jump server {jump.name}: ", jump.name)
            with _mapped(where):
                jump_logins.log_in(
                    gateway.host,
                    gateway.port,
                    self._ssh.jump_logins,
                    lambda attempt: self._open_gateway(attempt, jump, known_hosts),
                    lambda exc: closed_before_banner(exc, banner_seen=_banner_seen(self._gateway_conn())),
                )
            with _mapped(_Where(self.device, route, device, known_hosts, f"through {jump.name}: ")):
                self._conn.open()
        else:
            with _mapped(_Where(self.device, route, device, known_hosts)):
                self._conn.open()
        transport = self._conn.client.get_transport()
        if transport is None:
            self._unreachable("the SSH transport closed right after login")
        transport.set_keepalive(30)
        timer = _watchdog(self._ssh.connect_timeout + self._ssh.auth_timeout, transport.close)
        try:
            with _mapped(_Where(self.device, route, self._login, known_hosts)):
                self._channel = self._conn.client.invoke_shell(width=TERMINAL_WIDTH, height=48)
        finally:
            timer.cancel()

    def _open_gateway(self, attempt: int, jump: Login, known_hosts: Path) -> None:
        """Log in to the jump server. A retry dials on new Connections (the jump server's, and the device's,
        which is bound to it), so nothing of the failed attempt (its transport, its host-key state) is carried
        into the next; the failed one is closed."""
        if attempt > 1:
            with contextlib.suppress(Exception):
                self._gateway_conn().client.close()
            self._gateway = _connection(jump, self._ssh, known_hosts, None)
            self._conn = _connection(self._login, self._ssh, known_hosts, self._gateway)
        self._gateway_conn().open()

    def _gateway_conn(self) -> fabric.Connection:
        if self._gateway is None:
            raise ValueError(f"{self.device}: route {self._route} has no jump server")
        return self._gateway

    # ------------------------------------------------------------ I/O

    def _send(self, data: bytes, label: str) -> None:
        channel = self._live_channel()
        try:
            channel.sendall(data)
        except (OSError, paramiko.SSHException, EOFError):
            self._abandon()
            self._unreachable(f"connection lost while sending '{label}'")

    def _read(self, deadline: float, label: str, *, on_timeout: float | None) -> str | None:
        channel = self._live_channel()  # a channel closed by the device may still hold output: read it
        data: bytes | None = None
        with contextlib.suppress(TimeoutError):
            data = _recv(channel, deadline)
        if data is None:
            if on_timeout is None:
                return None
            self._abandon()
            self._unreachable(f"no answer to '{label}' within {on_timeout:g} s")
        if not data:
            self._abandon()
            self._unreachable(f"connection lost while waiting for '{label}'")
        return self._decoder.decode(data)

    def _live_channel(self) -> paramiko.Channel:
        if self._channel is None or self._abandoned:
            self._unreachable("the session was closed (after a failure, or by close())")
        return self._channel

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        """Leave politely (`exit`, one level at a time), then close the channel and both connections.

        Safe to call more than once, and after a failure (then it just closes)."""
        if self._channel is not None and not self._abandoned:
            with contextlib.suppress(OSError, paramiko.SSHException, EOFError):
                self._leave(self._channel)
        self._abandon()

    def _leave(self, channel: paramiko.Channel) -> None:
        # Leave each level, top first, after the one above has gone: input typed ahead of a shell that
        # exits may be lost with it. At most about a second per level; EOF means the device hung up.
        for name in reversed(self._levels):
            channel.sendall((shells.level(name).leave + "\n").encode())
            seen, deadline = "", time.monotonic() + 1.0
            while shells.waiting_prompt(seen) is None:
                data = _recv(channel, deadline)
                if not data:
                    return
                seen += self._decoder.decode(data)

    def _abandon(self) -> None:
        self._levels, self._abandoned = (), True
        if self._channel is not None:
            self._channel.close()
        for conn in (self._conn, self._gateway):
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()

    def __enter__(self) -> FabricSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _recv(channel: paramiko.Channel, deadline: float) -> bytes:
    """Up to 64 KiB of output; b"" when the connection is gone; TimeoutError at the deadline."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    channel.settimeout(remaining)
    try:
        return channel.recv(65536)
    except TimeoutError:
        raise
    except (OSError, paramiko.SSHException, EOFError):
        return b""
