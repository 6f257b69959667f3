"""A device's expert/root shell: real bash on a pseudo-terminal, its absolute paths kept in the device folder.

Clients must meet real bash (redirections, heredocs, ``$?``, coreutils, openssl), so the lab runs one, and
maps device paths to host paths on the way in and back on the way out (:mod:`lab.pathmap`). The SSH side
owns the client's terminal: it echoes, edits lines and turns ``\\n`` into ``\\r\\n``; so the pty here runs
with ECHO and OPOST off, and with line editing characters disabled.

Bash's ``PS1`` is a marker carrying ``$?`` and ``$PWD``, framed by ``\\x1e``/``\\x1f`` and a per-shell random
nonce that output cannot guess; the marker becomes a :class:`Prompt` event and never reaches the client.
``PS2`` stays ``'> '`` and arrives as ordinary output. The marker is ``PS1``, printed as bash is about to
read, and not a ``PROMPT_COMMAND``: bash runs that as a non-interactive snippet, and a hang-up that lands
while it finishes (right after the client saw the prompt) would end bash without saving its history.

History is kept as a device's bash keeps it, because clients must not get away with typing secrets into a
shell that records them: bash's defaults apply (``HISTFILE=~/.bash_history`` of the shell's user, default
sizes, file mode 0600), written when bash exits or is hung up (:meth:`BashShell.close`), and ``set +o
history``, ``unset HISTFILE`` or ``HISTFILE=/dev/null`` turn it off as they do on a device. Bash records the
line it got, whose device paths were mapped, so when bash has ended the default history file is unmapped
back to device paths (a ``HISTFILE`` the user points elsewhere keeps host paths). A shell started with
``history=False`` is ``ssh host command``'s non-interactive shell, which records nothing.

Lines are written in canonical mode, so a program bash starts reads the lines meant for it, as on a device.
Linux drops the end of a canonical line beyond 4095 bytes, so a longer line is cut into chunks separated by
VEOF (which hands a partial line to the reader without ending the input); control characters the tty would
act on (``^C``, ``^D``, ``^Z``, ``^\\``, ``^V``) are quoted with VLNEXT, so a line reaches bash byte for byte.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import fcntl
import logging
import os
import pty
import secrets
import shlex
import shutil
import signal
import struct
import termios
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from sftlab.shell.pathmap import HeredocTracker, PathMap, StreamUnmapper, overlap_len

_log = logging.getLogger(__name__)

_CHUNK = 1024  # bytes per canonical read, well below the 4095-byte line limit of n_tty
_VEOF = b"\x04"
_QUOTED = frozenset(b"\x03\x04\x16\x1a\x1c")  # VINTR, VEOF, VLNEXT, VSUSP, VQUIT
_DISABLED_CC = ("VERASE", "VKILL", "VWERASE", "VREPRINT", "VDISCARD", "VEOL", "VEOL2")
_GRACE_S = 1.0  # SIGHUP, then this long for bash to leave, then SIGKILL for whatever is left
_KILL_WAIT_S = 5.0  # bound on waiting for SIGKILLed processes to die (they cannot refuse)
_READ_SIZE = 65536
_userns: dict[str, bool] = {}  # "ok": unshare --user --map-root-user works here; "warned": said once
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
        self._markers = _MarkerSplitter(f"\x1eSFTLAB{nonce}:")
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
        argv = [_which("setsid"), "--ctty"]
        if user_ns_root and os.geteuid() != 0 and await _userns_available():
            argv += [_which("unshare"), "--user", "--map-root-user"]
        argv += [_which("bash"), "--noprofile", "--norc", "--noediting"]
        argv += ["-i"] if history else ["+o", "history", "-i"]
        _warn_if_unresolved(pathmap.root)
        nonce = secrets.token_hex(8)
        master, slave = pty.openpty()
        try:
            _configure_tty(slave)
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd_host, env=_shell_env(env, nonce)
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
        data = _tty_bytes(self._heredoc.map_line(self._pm, line))
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
            await self._write(_tty_bytes(command))

    async def send_eof(self) -> None:
        """``^D`` at the start of a line: bash reads end of input and exits, as it does on a device (a typed
        ``exit`` would be recorded in its history; this is not). Inside a heredoc it ends the heredoc."""
        self.idle = False
        async with self._write_lock:
            await self._write(_VEOF)

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
            fcntl.ioctl(self._fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    async def close(self) -> None:
        """Hang up: SIGHUP to every process of bash's session, SIGKILL to what is left after a grace.

        As on a device whose SSH connection dropped: bash saves its history on SIGHUP (unless history is
        off) and exits at once, well within the grace. Returns once those processes have died (bash reaped,
        the others left to their new parent) and the pty is closed; safe to call more than once and after
        bash exited.
        """
        if self._closed:
            return
        self._closed = True
        if self._proc.returncode is None:
            _hang_up(self._proc.pid)
            await asyncio.wait({self._watcher}, timeout=_GRACE_S)
        await _kill_session(self._proc.pid)
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


class _MarkerSplitter:
    """Splits a text stream into output and prompt-marker payloads; chunks may split a marker anywhere."""

    def __init__(self, head: str) -> None:
        self._head = head
        self._held = ""

    def feed(self, text: str) -> list[tuple[bool, str]]:
        """``(False, output)`` and ``(True, payload)`` items, in stream order."""
        text = self._held + text
        items: list[tuple[bool, str]] = []
        while (start := text.find(self._head)) >= 0:
            end = text.find("\x1f", start)
            if end < 0:
                break
            items += [(False, text[:start]), (True, text[start + len(self._head) : end])]
            text = text[end + 1 :]
        cut = text.find(self._head)
        cut = len(text) - overlap_len(text, self._head) if cut < 0 else cut
        items.append((False, text[:cut]))
        self._held = text[cut:]
        return [item for item in items if item[0] or item[1]]

    def flush(self) -> str:
        """What is held back, as plain output (the stream ended inside what looked like a marker)."""
        text, self._held = self._held, ""
        return text


def _tty_bytes(line: str) -> bytes:
    """The bytes to write for one line: specials quoted with VLNEXT, VEOF every _CHUNK bytes, then ``\\n``."""
    out = bytearray()
    size = 0
    for byte in line.encode():
        token = bytes((0x16, byte)) if byte in _QUOTED else bytes((byte,))
        if size + len(token) > _CHUNK:
            out += _VEOF
            size = 0
        out += token
        size += len(token)
    return bytes(out + b"\n")


def _configure_tty(fd: int) -> None:
    """Canonical input with signals, no echo, no output processing, no editing characters, 80x24."""
    attrs = termios.tcgetattr(fd)
    attrs[0] &= ~(termios.ICRNL | termios.INLCR | termios.IGNCR | termios.IXON | termios.IXOFF)
    attrs[1] &= ~termios.OPOST
    attrs[3] &= ~(termios.ECHO | termios.ECHONL)
    attrs[3] |= termios.ICANON | termios.ISIG | termios.IEXTEN
    for name in _DISABLED_CC:
        attrs[6][getattr(termios, name)] = b"\x00"
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))


def _shell_env(env: Mapping[str, str], nonce: str) -> dict[str, str]:
    """``env`` and the prompt settings; no ``HIST*`` here, so bash keeps history as its defaults say."""
    return {
        **env,
        "PS0": "",
        "PS1": f"\\036SFTLAB{nonce}:$?:$PWD\\037",  # bash decodes the octal escapes, then expands $? and $PWD
        "PS2": "> ",
    }


def _warn_if_unresolved(root: str) -> None:
    """Tools that resolve symlinks (``readlink -f``, ``pwd -P``) print real paths, which are not unmapped."""
    if root not in _unresolved_roots and os.path.realpath(root) != root:
        _unresolved_roots.add(root)
        _log.warning("device root %s is not a resolved path; resolved paths in output stay host paths", root)


def _which(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found on PATH; the lab's device shells need it")
    return path


async def _userns_available() -> bool:
    """Whether ``unshare --user --map-root-user`` works for this user (probed once per process)."""
    if "ok" not in _userns:
        probe = await asyncio.create_subprocess_exec(
            _which("unshare"),
            "--user",
            "--map-root-user",
            _which("true"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await probe.communicate()
        _userns["ok"] = probe.returncode == 0
        if not _userns["ok"] and not _userns.get("warned"):
            _userns["warned"] = True
            _log.warning(
                "unshare --user --map-root-user failed (%s); root shells run as uid %d",
                err.decode(errors="replace").strip(),
                os.geteuid(),
            )
    return _userns["ok"]


def _session_pids(sid: int) -> list[int]:
    """Every process whose session is ``sid``: bash, its jobs, and what they started (zombies included)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="utf-8", errors="replace") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 3 and fields[3] == str(sid):
            pids.append(int(entry.name))
    return pids


def _hang_up(sid: int) -> None:
    for pid in _session_pids(sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGHUP)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _kill_session(sid: int) -> None:
    """SIGKILL the session through pidfds (no pid reuse race) and wait until each process has died."""
    loop = asyncio.get_running_loop()
    fds: list[int] = []
    deaths: list[asyncio.Future[None]] = []
    for pid in _session_pids(sid):
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        fds.append(fd)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        death: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _settle, death)
        deaths.append(death)
    try:
        if deaths:
            await asyncio.wait(deaths, timeout=_KILL_WAIT_S)
    finally:
        for fd in fds:
            loop.remove_reader(fd)
            os.close(fd)
