"""The processes behind a device shell: the programs it needs, the user namespace of a root shell, and the
end of its session's processes.

A device's bash runs in a session of its own (``setsid``), and everything it starts stays in that session,
background jobs included. A hang-up is what a device's kernel sends when sshd closes the pty of a dropped
connection (:func:`hang_up`: bash and the foreground job; bash passes it on to its jobs); whatever of the
session is left after the caller's grace is killed through pidfds, so a pid reused meanwhile is never hit
(:func:`kill_session`). A non-root lab gives a root shell uid 0 in a new user
namespace when the system allows it (:func:`userns_available`, probed once per process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal

_log = logging.getLogger(__name__)

_KILL_WAIT_S = 5.0  # bound on waiting for SIGKILLed processes to die (they cannot refuse)
_userns: dict[str, bool] = {}  # "ok": unshare --user --map-root-user works here; "warned": said once


def which(name: str) -> str:
    """The path of program ``name``; RuntimeError when it is not on PATH."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found on PATH; the lab's device shells need it")
    return path


async def userns_available() -> bool:
    """Whether ``unshare --user --map-root-user`` works for this user (probed once per process)."""
    if "ok" not in _userns:
        probe = await asyncio.create_subprocess_exec(
            which("unshare"),
            "--user",
            "--map-root-user",
            which("true"),
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
    """Every process whose session is ``sid``: bash, its jobs, and what they started (zombies included).

    One ``getsid`` per process, not a read of its ``/proc/<pid>/stat``: the scan runs once per closed shell,
    and at 300 FTDs the file reads were 8 % of the lab's CPU.
    """
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if os.getsid(pid) == sid:
                pids.append(pid)
        except OSError:
            continue  # gone meanwhile
    return pids


def hang_up(leader: int, terminal: int) -> None:
    """What a device's kernel does when sshd closes the pty of a dropped connection: SIGHUP to the session's
    leader (bash, which sends it on to its jobs before it exits) and to the terminal's foreground process
    group. `terminal` is the pty's master side. No scan of the system's processes: that is
    :func:`kill_session`'s, for what is left after the grace."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(leader, signal.SIGHUP)
    try:
        foreground = os.tcgetpgrp(terminal)
    except OSError:
        return  # no foreground group (bash is gone and nothing holds the terminal)
    if foreground > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(foreground, signal.SIGHUP)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def kill_session(sid: int) -> None:
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
