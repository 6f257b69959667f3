"""A device's expert/root shell: real bash on a pseudo-terminal, its absolute paths kept in the device folder.

Clients must meet real bash (redirections, heredocs, ``$?``, coreutils, openssl), so the lab runs one, and
maps device paths to host paths on the way in and back on the way out (:mod:`sftlab.shell.pathmap`). What
goes over bash's pty (its settings, how a line is written so bash gets it byte for byte, the prompt marker
that becomes a :class:`Prompt` event and never reaches the client) is :mod:`sftlab.shell.bash_tty`'s; the
processes behind the shell (its session hung up and killed, the user namespace of a root shell) are
:mod:`sftlab.shell.processes`'.

History is kept as a device's bash keeps it, because clients must not get away with typing secrets into a
shell that records them: bash's defaults apply (``HISTFILE=~/.bash_history`` of the shell's user, default
sizes, file mode 0600), written when bash exits or is hung up (:meth:`BashShell.close`), and ``set +o
history``, ``unset HISTFILE`` or ``HISTFILE=/dev/null`` turn it off as they do on a device. Bash records the
line it got, whose device paths were mapped, so when bash has ended the default history file is unmapped
back to device paths (a ``HISTFILE`` the user points elsewhere keeps host paths). A shell started with
``history=False`` is ``ssh host command``'s non-interactive shell, which records nothing.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import os
import pty
import secrets
import shlex
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from sftlab.shell.bash_tty import VEOF, MarkerSplitter, configure_tty, prompt_env, set_size, tty_bytes
from sftlab.shell.pathmap import HeredocTracker, PathMap, StreamUnmapper
from sftlab.shell.processes import hang_up, kill_session, userns_available, which

_log = logging.getLogger(__name__)

# SIGHUP, then this long for bash to leave, then SIGKILL for whatever is left. A device's sshd never kills
# bash after a hang-up: it leaves when it has saved its history, however busy the machine. The lab must bound
# its clean-up, but 1 s was too short on a loaded test machine (a hung-up admin bash was killed before it
# saved its history, once in a full test run); bash normally leaves within milliseconds, so a longer bound
# costs nothing then.
_GRACE_S = 5.0
_READ_SIZE = 65536
_unresolved_roots: set[str] = set()  # roots already warned about


@dataclass(frozen=True)
class Output:
    """Text bash or its programs printed, with host paths already turned back into device paths."""

    text: str


@dataclass(frozen=True)
class Prompt:
    """Bash is back at its primary prompt: the last command's status and the device cwd."""

    status: int
    cwd: str


@dataclass(frozen=True)
class Exited:
    """Bash ended; ``code`` is its exit status, or 128 + N when signal N killed it. Always the last event."""

    code: int


Event = Output | Prompt | Exited


class BashShell:
    """One real bash for one shell level of one device session.

    Read it with :meth:`next_event` (or ``async for`` over :meth:`events`): :class:`Output`, then a
    :class:`Prompt` each time bash is ready for a command (the first one when bash has started), and one
    :class:`Exited` at the end; after that :meth:`next_event` keeps returning the same :class:`Exited`.
    ``idle`` is True between a Prompt and the next :meth:`send_line` (with lines typed ahead, a Prompt
    for an earlier line sets it too); ``cwd`` is the last device cwd seen. Made by :meth:`start`, used
    from the event loop that started it.
    """

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        fd: int,
        pathmap: PathMap,
        nonce: str,
        cwd: str,
        history_file: Path | None = None,
    ) -> None:
        self.idle = False
        self.cwd = cwd
        self._history_file = history_file
        self._status = 0  # the last command's status, as the last Prompt said
        self._swallow = 0  # prompts that end the lab's own lines (record_history), not the client's
        self._proc = proc
        self._fd = fd
        self._pm = pathmap
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._markers = MarkerSplitter(nonce)
        self._unmapper = StreamUnmapper(pathmap)
        self._heredoc = HeredocTracker()
        self._write_lock = asyncio.Lock()
        self._writable: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._exited: Exited | None = None
        self._closed = False
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._on_readable)
        self._reading = True
        self._watcher = asyncio.create_task(self._watch())

    @classmethod
    async def start(
        cls,
        *,
        pathmap: PathMap,
        cwd_host: Path,
        env: Mapping[str, str],
        user_ns_root: bool = False,
        history: bool = True,
    ) -> BashShell:
        """Spawn bash in ``cwd_host`` with ``env`` (host paths); returns at once, the first Prompt follows.

        With ``user_ns_root`` a non-root lab runs bash as uid 0 of a new user namespace (so ``chown root``
        works on the lab user's files); if the system refuses user namespaces, bash runs unwrapped and a
        warning is logged once. History goes to ``$HOME/.bash_history`` (``env`` should not set ``HIST*``,
        so bash's defaults apply); ``history=False`` starts bash with history off, as ``bash -c`` has it.
        Raises RuntimeError if ``setsid`` or ``bash`` is not installed.
        """
        argv = [which("setsid"), "--ctty"]
        if user_ns_root and os.geteuid() != 0 and await userns_available():
            argv += [which("unshare"), "--user", "--map-root-user"]
        argv += [which("bash"), "--noprofile", "--norc", "--noediting"]
        argv += ["-i"] if history else ["+o", "history", "-i"]
        _warn_if_unresolved(pathmap.root)
        nonce = secrets.token_hex(8)
        master, slave = pty.openpty()
        try:
            configure_tty(slave)
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd_host, env=prompt_env(env, nonce)
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        home = env.get("HOME")
        history_file = Path(home) / ".bash_history" if history and home else None
        return cls(proc, master, pathmap, nonce, pathmap.to_device(str(cwd_host)), history_file)

    @property
    def pid(self) -> int:
        """Bash's process id, which is also its session id (every process it starts is in that session)."""
        return self._proc.pid

    async def next_event(self) -> Event:
        if self._exited is not None and self._events.empty():
            return self._exited
        return await self._events.get()

    async def events(self) -> AsyncIterator[Event]:
        """Every event up to and including :class:`Exited`."""
        while True:
            event = await self.next_event()
            yield event
            if isinstance(event, Exited):
                return

    async def send_line(self, line: str) -> None:
        """Send one line (no ``\\n`` in it) as typed at the device; a line sent after bash exited is dropped.

        Paths are mapped except in heredoc bodies. Raises ValueError if ``line`` contains a newline.
        """
        if "\n" in line:
            raise ValueError("send_line takes a single line without '\\n'")
        self.idle = False
        data = tty_bytes(self._heredoc.map_line(self._pm, line))
        async with self._write_lock:
            await self._write(data)

    async def record_history(self, line: str) -> None:
        """Add ``line`` to bash's history as if bash had read it, without running it; call it when idle.

        For a line the lab carries out itself instead of bash (``sudo su``): a device's bash records it, so
        the lab's must too. Bash decides as for a typed line (history off, ``HISTCONTROL``, ``HISTIGNORE``):
        ``history -s`` replaces the lab's own line in the history, and ``$?`` is kept. The lab's line gets
        no Prompt event. Nothing is mapped: the line is recorded as the client typed it.
        """
        if "\n" in line:
            raise ValueError("record_history takes a single line without '\\n'")
        self.idle = False
        self._swallow += 1
        command = f"[[ -o history ]] && history -s -- {shlex.quote(line)}; (exit {self._status})"
        async with self._write_lock:
            await self._write(tty_bytes(command))

    async def send_eof(self) -> None:
        """``^D`` at the start of a line: bash reads end of input and exits, as it does on a device (a typed
        ``exit`` would be recorded in its history; this is not). Inside a heredoc it ends the heredoc."""
        self.idle = False
        async with self._write_lock:
            await self._write(VEOF)

    def send_interrupt(self) -> None:
        """``^C``: the tty sends SIGINT to the foreground job (bash abandons the line it was reading)."""
        self._heredoc.reset()
        if self._closed:
            return
        try:
            os.write(self._fd, b"\x03")
        except BlockingIOError:
            task = asyncio.create_task(self._write(b"\x03"))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        except OSError:
            _log.debug("interrupt not delivered: bash has gone")

    def resize(self, cols: int, rows: int) -> None:
        """Set the terminal size bash and its programs see (80x24 at start); they get SIGWINCH."""
        if not self._closed:
            set_size(self._fd, cols, rows)

    async def close(self) -> None:
        """Hang up: SIGHUP to bash and the foreground job (bash sends it on to its jobs), SIGKILL to whatever
        of its session is left after a grace.

        As on a device whose SSH connection dropped: bash saves its history on SIGHUP (unless history is
        off) and exits at once, well within the grace. Returns once those processes have died (bash reaped,
        the others left to their new parent) and the pty is closed; safe to call more than once and after
        bash exited.
        """
        if self._closed:
            return
        self._closed = True
        if self._proc.returncode is None:
            hang_up(self._proc.pid, self._fd)
            done, _ = await asyncio.wait({self._watcher}, timeout=_GRACE_S)
            if not done:  # a device would have let it finish: say so, as a test may miss its history
                _log.warning(
                    "bash %d did not leave within %g s of its hang-up; killed", self._proc.pid, _GRACE_S
                )
        await kill_session(self._proc.pid)
        await self._watcher
        for task in list(self._tasks):
            task.cancel()
        self._wake_writer()
        os.close(self._fd)

    # ---------------------------------------------------------------- output

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # EIO: no process holds the slave side any more
            data = b""
        if data:
            self._ingest(self._decoder.decode(data))
        else:
            self._stop_reading()

    def _ingest(self, text: str) -> None:
        for is_marker, value in self._markers.feed(text):
            if is_marker:
                self._on_prompt(value)
            else:
                self._emit(self._unmapper.feed(value))

    def _emit(self, text: str) -> None:
        if text:
            self._events.put_nowait(Output(text))

    def _on_prompt(self, payload: str) -> None:
        self._emit(self._unmapper.flush())
        status, _, pwd = payload.partition(":")
        self.cwd = self._pm.to_device(pwd)
        self.idle = True
        self._heredoc.reset()
        if self._swallow:
            self._swallow -= 1
            return
        self._status = int(status) if status.isdigit() else -1
        self._events.put_nowait(Prompt(self._status, self.cwd))

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    async def _watch(self) -> None:
        """When bash ends: pass on what it printed last, then Exited (background jobs may hold the pty)."""
        code = await self._proc.wait()
        self._unmap_history()
        while self._reading:
            try:
                data = os.read(self._fd, _READ_SIZE)
            except OSError:
                break
            if not data:
                break
            self._ingest(self._decoder.decode(data))
        self._stop_reading()
        self._ingest(self._decoder.decode(b"", final=True))
        self._emit(self._unmapper.feed(self._markers.flush()) + self._unmapper.flush())
        self.idle = False
        self._exited = Exited(128 - code if code < 0 else code)
        self._events.put_nowait(self._exited)

    def _unmap_history(self) -> None:
        """Device paths again in the history file bash wrote (it recorded the mapped lines it was sent).

        Rewritten in place, so the file keeps the mode and owner bash gave it (0600).
        """
        if self._history_file is None:
            return
        try:
            with self._history_file.open("r+", encoding="utf-8", errors="surrogateescape") as file:
                text = file.read()
                unmapped = self._pm.to_device(text)
                if unmapped != text:
                    file.seek(0)
                    file.write(unmapped)
                    file.truncate()
        except FileNotFoundError:
            pass  # history off, or nothing recorded
        except OSError as exc:
            _log.warning("could not unmap the history file %s: %s", self._history_file, exc)

    # ---------------------------------------------------------------- input

    async def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._closed:
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                await self._until_writable()
            except OSError:
                _log.debug("input dropped: bash has gone")
                return

    async def _until_writable(self) -> None:
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._writable = waiter
        self._loop.add_writer(self._fd, self._wake_writer)
        try:
            await waiter
        finally:
            self._writable = None
            if not self._closed:
                self._loop.remove_writer(self._fd)

    def _wake_writer(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        if self._closed:
            self._loop.remove_writer(self._fd)


def _warn_if_unresolved(root: str) -> None:
    """Tools that resolve symlinks (``readlink -f``, ``pwd -P``) print real paths, which are not unmapped."""
    if root not in _unresolved_roots and os.path.realpath(root) != root:
        _unresolved_roots.add(root)
        _log.warning("device root %s is not a resolved path; resolved paths in output stay host paths", root)
