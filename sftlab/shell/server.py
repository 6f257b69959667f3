"""The asyncssh adapter: a simulated device's SSH login, CLISH and the expert/root ladder over real bash.

`lab.shell` decides what a line means and what a device prints; `lab.bash` runs the real bash; `lab.tty` is
the pty's line discipline. This module wires them to an SSH channel and applies the device's knobs
(latency, connection drops, sudo variants), which the fleet may change while the lab runs.

The end of a session is a device's too, because what a bash writes on its way out (its history) depends on
it: ``^D`` is end of input for the shell level that reads it; a closed channel or a lost connection is a
hang-up, which every shell level gets (SIGHUP, as when sshd closes the pty), even with lines still queued.
``sudo su`` is carried out here, not by bash, so the admin's bash is told to record the line as bash would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import asyncssh

from sftlab.fleet.spec import Knobs
from sftlab.shell import texts
from sftlab.shell.bash import BashShell, Exited, Output, Prompt
from sftlab.shell.pathmap import PathMap
from sftlab.shell.tty import EndOfInput, Input, Interrupt, Line, LineDiscipline

log = logging.getLogger(__name__)

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

ClishStatus = Callable[[bool], Awaitable[str]]


@dataclass
class Endpoint:
    """Everything a session needs to know about the device it runs on; `knobs` may change at any time."""

    name: str
    face: texts.DeviceFace
    login_user: str
    password: str
    landing: Literal["clish", "bash"]
    home: str
    pathmap: PathMap
    host_path: Callable[[str], Path]
    bin_dirs: tuple[Path, ...]
    extra_env: Mapping[str, str]
    knobs: Knobs
    can_sudo: bool = True
    clish_status: ClishStatus | None = None
    sessions: set[Session] = field(default_factory=set)


class ConnectionDroppedError(Exception):
    """The device's `drop_after_bytes` knob cut the connection."""


class HungUpError(Exception):
    """The client's side is gone (channel closed, connection lost): the session hangs up every shell."""


class DeviceServer(asyncssh.SSHServer):
    """Password auth for the device's one login; optionally only from one source address."""

    def __init__(self, endpoint: Endpoint, only_from: str | None = None) -> None:
        self._endpoint = endpoint
        self._only_from = only_from

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peer = conn.get_extra_info("peername")
        if self._only_from is not None and (not peer or peer[0] != self._only_from):
            conn.abort()

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        ep = self._endpoint
        return username == ep.login_user and hmac.compare_digest(password.encode(), ep.password.encode())


async def listen(
    endpoint: Endpoint,
    host: str,
    port: int,
    host_key: asyncssh.SSHKey,
    *,
    only_from: str | None = None,
    server_factory: Callable[[], asyncssh.SSHServer] | None = None,
) -> asyncssh.SSHAcceptor:
    """Start an SSH listener for the device on (host, port); port 0 picks a free one."""

    async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
        await Session(process, endpoint).run()

    return await asyncssh.listen(
        host,
        port,
        server_factory=server_factory or (lambda: DeviceServer(endpoint, only_from)),
        server_host_keys=[host_key],
        process_factory=handle,
        encoding=None,
        line_editor=False,
        allow_scp=False,
        agent_forwarding=False,
        x11_forwarding=False,
        reuse_address=True,
    )


class Session:
    """One interactive (or exec) session on a device."""

    def __init__(self, process: asyncssh.SSHServerProcess[bytes], endpoint: Endpoint) -> None:
        self._process = process
        self._conn = process.channel.get_connection()
        self._ep = endpoint
        self._ld = LineDiscipline(pty=process.get_terminal_type() is not None)
        self._inputs: asyncio.Queue[Input] = asyncio.Queue()
        self._pushed_back: Input | None = None
        self._client_gone: Literal["eof", "hang-up"] | None = None  # set when the client side has ended
        self._bytes = 0
        self._lectured = False
        self._shells: list[BashShell] = []

    async def run(self) -> None:
        self._ep.sessions.add(self)
        reader = asyncio.create_task(self._read_client())
        status = 0
        try:
            if self._process.command is not None:
                status = await self._exec(self._process.command)
            else:
                await self._interactive()
        except (ConnectionDroppedError, HungUpError, BrokenPipeError, ConnectionError, asyncssh.Error):
            status = 255
        finally:
            reader.cancel()
            for bash in reversed(self._shells):
                await bash.close()
            self._ep.sessions.discard(self)
            with contextlib.suppress(Exception):
                self._process.exit(status)

    def abort(self) -> None:
        """Cut the connection as a network failure would (used by the fleet and by drop_after_bytes)."""
        self._conn.abort()

    # ------------------------------------------------------------------ I/O

    def _count(self, n: int) -> int:
        """Count channel bytes; return how many of `n` may still pass before the drop knob cuts."""
        limit = self._ep.knobs.drop_after_bytes
        self._bytes += n
        if limit is None or self._bytes <= limit:
            return n
        return max(0, n - (self._bytes - limit))

    def _write(self, text: str) -> None:
        data = self._ld.output(text)
        allowed = self._count(len(data))
        self._process.stdout.write(data[:allowed])
        if allowed < len(data):
            self.abort()
            raise ConnectionDroppedError(self._ep.name)

    async def _read_client(self) -> None:
        """Queue the client's input; however the client side ends, queue an EndOfInput that stays.

        EOF on a channel still open is end of input (each shell level reads it in turn); a closed channel,
        a lost connection or a drop by the knob is a hang-up (`_client_gone`). Input that arrived with the
        close still counts, as bytes sshd wrote to the pty before closing it do.
        """
        gone: Literal["eof", "hang-up"] = "hang-up"
        try:
            while True:
                data = await self._process.stdin.read(65536)
                if not data:
                    if not self._process.channel.is_closing():
                        gone = "eof"
                    return
                allowed = self._count(len(data))
                echo, inputs = self._ld.feed(data[:allowed])
                if echo:
                    with contextlib.suppress(BrokenPipeError):  # the channel is closing: nobody sees it
                        self._process.stdout.write(echo)
                if allowed < len(data):
                    self.abort()
                    return
                for item in inputs:
                    self._inputs.put_nowait(item)
        except (asyncssh.Error, OSError) as exc:
            log.debug("%s: the client's side ended: %s", self._ep.name, exc)
        finally:
            self._client_gone = gone
            self._inputs.put_nowait(EndOfInput())

    async def _next_input(self) -> Input:
        """The next input; once the client side has ended, EndOfInput for ever (every level reads it)."""
        if self._pushed_back is not None:
            item, self._pushed_back = self._pushed_back, None
            return item
        item = await self._inputs.get()
        if isinstance(item, EndOfInput) and self._client_gone is not None and self._inputs.empty():
            self._inputs.put_nowait(item)
        return item

    async def _latency(self) -> None:
        if self._ep.knobs.latency_ms:
            await asyncio.sleep(self._ep.knobs.latency_ms / 1000)

    # ------------------------------------------------------------------ levels

    async def _interactive(self) -> None:
        ep = self._ep
        if ep.knobs.last_login:
            peer = self._process.get_extra_info("peername")
            self._write(texts.last_login_line(datetime.now(UTC), peer[0] if peer else "127.0.0.1"))
        if ep.login_user == "admin":
            self._write(texts.banner(ep.face))
        if ep.landing == "bash" or ep.knobs.lands_in == "bash":
            await self._bash(ep.login_user, ep.home)
        else:
            await self._clish()

    async def _clish(self) -> None:
        while True:
            self._write(texts.CLISH_PROMPT)
            item = await self._next_input()
            if isinstance(item, EndOfInput):
                return
            if isinstance(item, Interrupt):
                continue
            await self._latency()
            if not await self._clish_line(item.text):
                return

    async def _clish_line(self, text: str) -> bool:
        """Carry out one CLISH line; False when the session should end."""
        action = texts.clish_action(text, self._ep.face.kind)
        if action is texts.Clish.EXIT:
            return False
        if action is texts.Clish.EXPERT:
            await self._bash("admin", self._ep.home)
        elif action is texts.Clish.SHOW_VERSION:
            self._write(texts.show_version(self._ep.face))
        elif action in (texts.Clish.TUNNEL_STATUS, texts.Clish.TUNNEL_STATUS_BRIEF) and self._ep.clish_status:
            self._write(await self._ep.clish_status(action is texts.Clish.TUNNEL_STATUS_BRIEF))
        elif action is not texts.Clish.NOTHING:
            self._write(texts.CLISH_UNKNOWN)
        return True

    def _env(self, user: str) -> dict[str, str]:
        ep = self._ep
        home = "/root" if user == "root" else ep.home
        path = ":".join([*(str(p) for p in ep.bin_dirs), SYSTEM_PATH])
        return {
            "HOME": str(ep.host_path(home)),
            "USER": user,
            "LOGNAME": user,
            "PATH": path,
            "TERM": self._process.get_terminal_type() or "dumb",
            "LANG": "C.UTF-8",
            "SHELL": "/bin/bash",
            "SFTLAB_LEVEL": "root" if user == "root" else "admin",
            **ep.extra_env,
        }

    def _host_cwd(self, cwd: str) -> Path:
        try:
            return self._ep.host_path(cwd)
        except ValueError:
            return Path(cwd)

    async def _start_bash(self, user: str, cwd: str, *, history: bool = True) -> BashShell:
        """A bash for `user`; its history goes to that user's `~/.bash_history` (HOME is the user's)."""
        bash = await BashShell.start(
            pathmap=self._ep.pathmap,
            cwd_host=self._host_cwd(cwd),
            env=self._env(user),
            user_ns_root=user == "root",
            history=history,
        )
        self._shells.append(bash)
        return bash

    async def _bash(self, user: str, cwd: str) -> None:
        """Run one bash level until it exits; `sudo su` from the admin level nests a root level."""
        bash = await self._start_bash(user, cwd)
        home = "/root" if user == "root" else self._ep.home
        pump = asyncio.create_task(self._pump(bash, user, home))
        try:
            while not pump.done():
                item = await self._input_or(pump)
                if item is None:
                    break
                await self._bash_input(bash, user, home, item)
            await pump
        finally:
            pump.cancel()
            await bash.close()
            self._shells.remove(bash)

    async def _input_or(self, task: asyncio.Task[None]) -> Input | None:
        """The next client input, or None when `task` finishes first (the input then stays queued)."""
        if self._pushed_back is not None:
            return await self._next_input()
        get = asyncio.create_task(self._next_input())
        await asyncio.wait({get, task}, return_when=asyncio.FIRST_COMPLETED)
        if get.done():
            if task.done():
                self._pushed_back = get.result()
                return None
            return get.result()
        get.cancel()
        return None

    async def _bash_input(self, bash: BashShell, user: str, home: str, item: Input) -> None:
        if isinstance(item, Interrupt):
            bash.send_interrupt()
            return
        if isinstance(item, EndOfInput):
            if self._client_gone == "hang-up":
                raise HungUpError(self._ep.name)  # each level's `_bash` hangs its bash up on the way out
            await bash.send_eof()
            return
        request = texts.sudo_request(item.text) if user != "root" and bash.idle else None
        if request is not None and self._ep.can_sudo:
            await self._latency()
            # Bash records the line before sudo runs (and asks for the password, which bash never sees).
            await bash.record_history(item.text)
            await self._sudo(bash, request)
            self._write(texts.bash_prompt(user, self._ep.face.hostname, bash.cwd, home))
            return
        await self._latency()
        await bash.send_line(item.text)

    async def _pump(self, bash: BashShell, user: str, home: str) -> None:
        while True:
            event = await bash.next_event()
            if isinstance(event, Output):
                self._write(event.text)
            elif isinstance(event, Prompt):
                self._write(texts.bash_prompt(user, self._ep.face.hostname, event.cwd, home))
            elif isinstance(event, Exited):
                return

    async def _sudo(self, bash: BashShell, request: str) -> None:
        """`sudo su`: lecture and password as the device's sudo does them, then a root level."""
        ep = self._ep
        if ep.knobs.sudo == "lecture" and not self._lectured:
            self._write(texts.SUDO_LECTURE)
            self._lectured = True
        if ep.knobs.sudo != "cached" and not await self._sudo_password():
            return
        await self._bash("root", bash.cwd if request == "su" else "/root")

    async def _sudo_password(self) -> bool:
        for attempt in range(1, texts.SUDO_TRIES + 1):
            self._write(texts.PASSWORD_PROMPT)
            self._ld.echo = False
            try:
                item = await self._next_input()
            finally:
                self._ld.echo = True
            self._write("\n")
            if not isinstance(item, Line):
                return False
            if hmac.compare_digest(item.text.encode(), self._ep.password.encode()):
                return True
            self._write(texts.SUDO_RETRY if attempt < texts.SUDO_TRIES else texts.SUDO_GAVE_UP)
        return False

    async def _exec(self, command: str) -> int:
        """An exec request runs the line where a login would land, then ends with its status.

        In bash it is `bash -c`'s non-interactive run on a device, so nothing goes to the history file.
        """
        ep = self._ep
        if ep.landing == "clish" and ep.knobs.lands_in == "clish":
            action = texts.clish_action(command, ep.face.kind)
            await self._clish_line(command)
            return 1 if action is texts.Clish.UNKNOWN else 0
        bash = await self._start_bash(ep.login_user, ep.home, history=False)
        try:
            await self._until_prompt(bash)
            await bash.send_line(command)
            return await self._until_prompt(bash)
        finally:
            await bash.close()
            self._shells.remove(bash)

    async def _until_prompt(self, bash: BashShell) -> int:
        while True:
            event = await bash.next_event()
            if isinstance(event, Output):
                self._write(event.text)
            elif isinstance(event, Prompt):
                return event.status
            else:
                return event.code
