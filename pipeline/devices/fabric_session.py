"""The real `DeviceSession`: Fabric/paramiko to an FMC or FTD, one interactive shell climbed to root.

The only module that imports fabric or paramiko (ruff TID251). Fabric's defaults are overridden every time
(STYLE lesson 2): host keys are checked against a known_hosts file with paramiko's RejectPolicy (trust on
first use only when settings say so; a changed key is always refused), every wait has a timeout, no OpenSSH
config is read unless settings name one, and the jump route goes through `gateway=`.

After login the session climbs CLISH -> expert -> root with the pure decisions of `shells`, then runs each
command framed by markers carrying a fresh nonce (`shells.frame`), so it never depends on the device's prompt.
Files travel as base64 in short command lines and are checked by SHA-256 on both ends.

Secrets: the password is typed without being logged; no password, file content or base64 chunk goes into a
log line or an exception. A write interrupted by a dropped connection leaves the target untouched and may
leave `.<name>.sftrenew-<nonce>.tmp[.b64]` next to it (`TEMP_GLOB`), safe to delete.

A session is used by one thread at a time.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import fcntl
import hashlib
import logging
import math
import posixpath
import re
import secrets
import shlex
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

import fabric
import paramiko
from pydantic import SecretStr

from pipeline.devices import shells
from pipeline.devices.session import Answer, CommandResult, Route
from pipeline.errors import (
    AuthenticationFailedError,
    CommandFailedError,
    ConfigError,
    DeviceError,
    DeviceUnreachableError,
    HostKeyRejectedError,
    UnexpectedShellError,
)
from pipeline.secrets import REDACTED
from pipeline.settings import SshSettings

log = logging.getLogger(__name__)


TERMINAL_WIDTH = 1024
_CHUNK_FLOOR = 64
_OWNER_RE = re.compile(r"[a-z_][\w.-]*:[a-z_][\w.-]*\Z")
_SHA256_RE = re.compile(r"\b([0-9a-f]{64})\b")
_append_lock = threading.Lock()


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
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        try:
            with _append_lock, self._path.open("a+b") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)  # other worker processes may append at the same time
                if handle.seek(0, 2) and (handle.seek(-1, 2), handle.read(1))[1] != b"\n":
                    line = "\n" + line
                handle.write(line.encode())
        except OSError as exc:
            raise ConfigError(f"cannot record a host key in {self._path}: {exc.strerror}") from None
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.warning(
            "trusted on first use: %s %s %s, recorded in %s",
            hostname,
            key.get_name(),
            key.fingerprint,
            self._path,
        )


def _check_host_keys(client: paramiko.SSHClient, known_hosts: Path, *, tofu: bool) -> None:
    try:
        if known_hosts.exists():
            client.load_host_keys(str(known_hosts))
        elif tofu:
            known_hosts.touch(mode=0o644)
    except OSError as exc:
        raise ConfigError(f"cannot use the known_hosts file {known_hosts}: {exc.strerror}") from None
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
    _check_host_keys(conn.client, known_hosts, tofu=ssh.trust_on_first_use)
    return conn


@dataclass(frozen=True)
class _Where:
    """What a connection error is about: the device and route it is reported under, and which hop failed."""

    device: str
    route: str
    hop: Login
    known_hosts: Path
    via: str = ""

    def error(self, exc: BaseException) -> DeviceError:
        """The DeviceError an exception from connecting means (precise mapping; see the module docstring)."""
        if isinstance(exc, paramiko.BadHostKeyException | _UnknownHostKeyError):
            changed = isinstance(exc, paramiko.BadHostKeyException)
            return HostKeyRejectedError(self.device, self.route, str(self.known_hosts), changed=changed)
        if isinstance(exc, paramiko.AuthenticationException):
            user = self.hop.username if not self.via else f"{self.hop.username}@{self.hop.name}"
            return AuthenticationFailedError(self.device, self.route, user)
        return DeviceUnreachableError(self.device, self.route, self.via + _reason(exc, self.hop))


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


# ---------------------------------------------------------------- writing files


@dataclass(frozen=True)
class _WritePlan:
    """The command lines of one atomic write, each short enough to type (`shells.MAX_COMMAND`).

    The temp files sit in the target's folder (a rename within one folder is atomic); the finishing line
    runs in a subshell that `cd`s there, so the long folder path is typed once and the session's cwd stays.
    """

    digest: str
    create: str
    chunks: tuple[str, ...]
    finish: str
    commit: str
    cleanup: str

    @classmethod
    def build(cls, path: str, data: bytes, mode: int, owner: str) -> _WritePlan:
        if not _OWNER_RE.match(owner) or not 0 <= mode <= 0o7777:
            raise ValueError(f"owner must be user:group and mode a permission number, got {owner!r} {mode:o}")
        folder, name = posixpath.split(path)
        if not posixpath.isabs(path) or not name:
            raise ValueError(f"write_file_atomic needs an absolute file path, got {path!r}")
        tmp_name = f".{name}.sftrenew-{secrets.token_hex(6)}.tmp"
        tmp, b64 = posixpath.join(folder, tmp_name), posixpath.join(folder, tmp_name + ".b64")
        d, t, b = shlex.quote(folder), shlex.quote(tmp_name), shlex.quote(tmp_name + ".b64")
        # `t=<name>` keeps the finishing line short: the name is typed once, relative to the folder.
        plan = cls(
            digest=hashlib.sha256(data).hexdigest(),
            create=f"(cd {d} && umask 077 && : > {b} && : > {t})",
            chunks=_chunk_lines(base64.b64encode(data).decode("ascii"), shlex.quote(b64)),
            finish=f'(cd {d} && t={t} && base64 -d "$t.b64" > "$t" && rm -f "$t.b64" && '
            f'chmod {mode:o} "$t" && chown {owner} "$t" && sha256sum "$t")',
            # `mv` onto a folder would move the file into it; refuse instead (`mv -T` is GNU-only).
            commit=f"[ ! -d {shlex.quote(path)} ] && mv -f {shlex.quote(tmp)} {shlex.quote(path)}",
            cleanup=f"rm -f {shlex.quote(tmp)} {shlex.quote(b64)}",
        )
        for line in (plan.create, plan.finish, plan.commit, plan.cleanup):
            shells.frame(line, _nonce())  # ValueError now, before anything is sent
        return plan


def _chunk_lines(encoded: str, quoted_b64_path: str) -> tuple[str, ...]:
    """`printf` lines appending `encoded` to the .b64 file, each as long as a typed line allows."""
    budget = shells.MAX_COMMAND - len(f"printf '%s' '' >> {quoted_b64_path}")
    size = budget // 4 * 4
    if size < _CHUNK_FLOOR:
        raise ValueError(f"folder path too long to write in {shells.MAX_COMMAND}-character commands")
    return tuple(
        f"printf '%s' '{encoded[start : start + size]}' >> {quoted_b64_path}"
        for start in range(0, len(encoded), size)
    )


def _nonce() -> str:
    return secrets.token_hex(8)


# ---------------------------------------------------------------- the session


class FabricSession:
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
        self._login = device
        self._route = route
        self._conn = conn
        self._gateway = gateway
        self._ssh = ssh
        self._sudo_password = sudo_password
        self._secrets = [p.get_secret_value() for p in (device.password, sudo_password) if p]
        self._channel: paramiko.Channel | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._levels: tuple[shells.LevelName, ...] = ()
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

    @property
    def device(self) -> str:
        return self._login.name

    @property
    def route(self) -> Route:
        return self._route

    # ------------------------------------------------------------ opening

    def _connect(self, known_hosts: Path, jump: Login | None) -> None:
        route = str(self._route)
        log.debug("connecting to %s (%s:%s, %s)", self.device, self._login.host, self._login.port, route)
        # Errors name the address really dialled (a named ssh_config may set HostName).
        device = replace(self._login, host=self._conn.host, port=self._conn.port)
        if jump is not None and self._gateway is not None:
            hop = replace(jump, host=self._gateway.host, port=self._gateway.port)
            with _mapped(_Where(self.device, route, hop, known_hosts, f"jump server {jump.name}: ")):
                self._gateway.open()
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

    def _climb(self) -> None:
        climb, seen = shells.Climb(), ""
        deadline = time.monotonic() + self._ssh.command_timeout
        while True:
            decision = shells.decide(climb, seen)
            action, climb = decision.action, decision.climb
            if isinstance(action, shells.Wait):
                chunk = self._read(deadline, "the shell prompt", on_timeout=None)
                if chunk is None:
                    self._climb_failed(shells.stalled(climb, seen))
                seen += chunk
                continue
            if isinstance(action, shells.Done):
                break
            if isinstance(action, shells.Fail):
                self._climb_failed(action)
            if isinstance(action, shells.SendPassword):
                self._type_password()
            else:
                self._type(action.line)
            log.debug("%s: %s", self.device, climb.phase.value)
            seen, deadline = "", time.monotonic() + self._ssh.command_timeout
        self._levels = climb.levels
        who = self._run("id -u", timeout=self._ssh.command_timeout)
        if who.output.strip() != "0":
            shown = self._redact(shells.last_lines(seen))
            raise UnexpectedShellError(self.device, str(self._route), shown, "root (id -u = 0)")
        log.debug("%s: root shell ready (%s)", self.device, self._route)

    def _climb_failed(self, fail: shells.Fail) -> NoReturn:
        route, shown = str(self._route), self._redact(fail.shown)
        self._abandon()
        if fail.kind == "authentication":
            raise AuthenticationFailedError(self.device, route, f"{self._login.username} (sudo su)")
        if fail.kind == "no_prompt":
            self._unreachable(f"no {fail.expected} prompt within {self._ssh.command_timeout:g} s")
        raise UnexpectedShellError(self.device, route, shown, fail.expected)

    # ------------------------------------------------------------ commands

    def run(
        self,
        command: str,
        *,
        timeout: float | None = None,
        check: bool = True,
        answers: Sequence[Answer] = (),
    ) -> CommandResult:
        """Run one command line as root; see `DeviceSession.run`. The output has `\\n` line ends.

        The command line is logged (redacted of passwords) and a failure's output tail goes into the error:
        never put file contents in a command (use `write_file_atomic`) or `cat` a key with `check=True`.
        """
        shown = self._redact(command)
        log.debug("%s: run %s", self.device, shown[:200])
        result = self._run(command, timeout=timeout or self._ssh.command_timeout, answers=answers)
        log.debug("%s: exit %d, %d characters of output", self.device, result.exit_code, len(result.output))
        if check and not result.ok:
            raise CommandFailedError(
                self.device, str(self._route), shown[:200], result.exit_code, self._redact(result.output)
            )
        return result

    def _run(
        self, command: str, *, timeout: float, answers: Sequence[Answer] = (), label: str = ""
    ) -> CommandResult:
        """Type one framed command and read until its end marker; `label` names it in errors (default: its
        first word). Lost connections and timeouts close the session and raise DeviceUnreachableError."""
        nonce = _nonce()
        framed = shells.FramedOutput(nonce, answers)
        label = label or (command.split(maxsplit=1)[0] if command.strip() else "(empty)")
        self._type(shells.frame(command, nonce), label)
        deadline = time.monotonic() + timeout
        while framed.result is None:
            chunk = self._read(deadline, label, on_timeout=timeout)
            assert chunk is not None  # noqa: S101 - _read raises on timeout when on_timeout is set
            for reply in framed.feed(chunk):
                self._type(reply, label)
        return framed.result

    def read_file(self, path: str) -> bytes:
        """The exact bytes of `path`, sent as base64 and checked against the device's `sha256sum`.

        A missing or unreadable file is a CommandFailedError (with sha256sum's complaint, never file data).
        """
        quoted = shlex.quote(path)
        command = f"sha256sum {quoted} && base64 {quoted}"
        result = self._run(command, timeout=self._ssh.command_timeout, label=f"read {path}")
        head, _, body = result.output.partition("\n")
        digest = _SHA256_RE.search(head)
        if not result.ok or digest is None:
            tail = self._redact(result.output if not result.ok else "(unexpected output withheld)")
            raise CommandFailedError(self.device, str(self._route), f"read {path}", result.exit_code, tail)
        try:
            data = base64.b64decode("".join(body.split()), validate=True)
        except ValueError:
            data = b""
        if hashlib.sha256(data).hexdigest() != digest.group(1):
            withheld = "(file data withheld) the bytes received do not match the device's sha256sum"
            raise CommandFailedError(self.device, str(self._route), f"read {path}", 0, withheld)
        log.debug("%s: read %s (%d bytes, sha256 %s)", self.device, path, len(data), digest.group(1))
        return data

    def write_file_atomic(
        self, path: str, data: bytes, *, mode: int = 0o644, owner: str = "root:root"
    ) -> None:
        """Replace `path` with `data` (see `DeviceSession.write_file_atomic`).

        The bytes go to `.<name>.sftrenew-<nonce>.tmp(.b64)` next to the target, are checked by SHA-256, get
        their mode and owner, and only then are renamed over the target. Any failure before the rename
        removes the temporary files (best effort) and leaves the target as it was; a lost connection may
        leave them behind (`TEMP_GLOB`). Every command line is built and checked before the first is sent.
        """
        plan = _WritePlan.build(path, data, mode, owner)
        log.debug("%s: write %s (%d bytes, sha256 %s)", self.device, path, len(data), plan.digest)
        try:
            for command in (plan.create, *plan.chunks):
                self._step(command, f"upload to {path}")
            done = self._step(plan.finish, f"decode, chmod and chown the temp file for {path}")
            self._check_digest(done.output, plan.digest, path)
            self._step(plan.commit, f"rename into {path}")
        except DeviceUnreachableError:
            raise  # the session is gone; the temp files stay (TEMP_GLOB)
        except BaseException:
            with contextlib.suppress(DeviceError):
                self._run(plan.cleanup, timeout=self._ssh.command_timeout, label="rm")
            raise

    def _check_digest(self, output: str, digest: str, path: str) -> None:
        found = _SHA256_RE.search(output)
        if found is None or found.group(1) != digest:
            why = f"sha256 on the device: {found.group(1) if found else 'none'}, sent {digest}"
            raise CommandFailedError(self.device, str(self._route), f"write {path}", 0, why)

    def _step(self, command: str, what: str) -> CommandResult:
        """A write step: its command line is not logged or shown (it may hold file data); `what` is."""
        result = self._run(command, timeout=self._ssh.command_timeout, label=what)
        if not result.ok:
            tail = "(output withheld)" if "printf" in command else self._redact(result.output)[-200:]
            raise CommandFailedError(self.device, str(self._route), what, result.exit_code, tail)
        return result

    # ------------------------------------------------------------ I/O

    def _type(self, line: str, label: str = "") -> None:
        self._send((line + "\n").encode(), label or line)

    def _type_password(self) -> None:
        self._send((self._sudo_password.get_secret_value() + "\n").encode(), "the sudo password")

    def _send(self, data: bytes, label: str) -> None:
        channel = self._live_channel()
        try:
            channel.sendall(data)
        except (OSError, paramiko.SSHException, EOFError):
            self._abandon()
            self._unreachable(f"connection lost while sending '{label}'")

    def _read(self, deadline: float, label: str, *, on_timeout: float | None) -> str | None:
        """The next output (decoded); None at the deadline when `on_timeout` is None, else a
        DeviceUnreachableError naming `label` (the session is closed: its state is unknown)."""
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

    def _unreachable(self, reason: str) -> NoReturn:
        raise DeviceUnreachableError(self.device, str(self._route), reason)

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, REDACTED)
        return text

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
        """Close everything without a word (the shell's state is unknown, or it is already gone)."""
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
