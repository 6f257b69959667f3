"""Reading many device files with few commands, over any `DeviceSession`.

A backup or a regeneration read-back touches hundreds of files on a large FMC (three per peer); one command
round trip per file would dominate the run. Each file is printed as a header line with its path and the
device's own SHA-256, then its bytes in base64 on one line; the digests are checked here, so a file garbled
in transit is an error, not a silently wrong backup. Command lines stay short (sessions refuse long ones, so
that a terminal never wraps what is typed): a tree is walked with `find` on the device, and an explicit list
of paths is sent in small batches.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import secrets
import shlex
from collections.abc import Callable, Iterable

from pipeline.devices.session import DeviceSession
from pipeline.errors import DeviceUnreachableError

#: Longest command line a session accepts (`framing.MAX_COMMAND`), less a margin.
_MAX_COMMAND = 380


def _find(roots: Iterable[str], names: Iterable[str], path_glob: str | None) -> str:
    tests = [f"-name {shlex.quote(n)}" for n in names]
    name_test = "\\( " + " -o ".join(tests) + " \\) " if tests else ""
    path_test = f"-path {shlex.quote(path_glob)} " if path_glob else ""
    quoted = " ".join(shlex.quote(r) for r in roots)
    return f'for r in {quoted}; do [ -e "$r" ] && find "$r" -type f {name_test}{path_test}-print; done'


def list_files(
    session: DeviceSession, roots: Iterable[str], *, names: Iterable[str] = (), path_glob: str | None = None
) -> list[str]:
    """Regular files under `roots` (device paths; a missing root is skipped), optionally only those whose
    name matches one of the glob patterns in `names` and whose path matches `path_glob`; sorted."""
    result = session.run(_find(roots, names, path_glob) + "; true")
    return sorted(line for line in result.output.splitlines() if line.startswith("/"))


def read_tree(
    session: DeviceSession, roots: Iterable[str], *, names: Iterable[str] = (), path_glob: str | None = None
) -> dict[str, bytes]:
    """Every regular file under `roots` (filtered as in `list_files`), read in one command."""
    tag = _tag()
    command = f"{_find(roots, names, path_glob)} | while IFS= read -r f; do {_dump(tag)}; done"
    return _decode(session, session.run(command, timeout=600.0).output, tag)


def read_files(session: DeviceSession, paths: Iterable[str]) -> dict[str, bytes]:
    """The exact bytes of each path that is a regular file; a path that is not is absent from the result
    (the caller decides whether that is an error)."""
    by_folder: dict[str, list[str]] = {}
    for path in dict.fromkeys(paths):
        folder, _, name = path.rpartition("/")
        by_folder.setdefault(folder or "/", []).append(name)
    files: dict[str, bytes] = {}
    for folder, names in by_folder.items():
        tag = _tag()
        for command in _batched(names, functools.partial(_read_names, folder, tag=tag)):
            files.update(_decode(session, session.run(command).output, tag))
    return files


def _read_names(folder: str, quoted_names: str, *, tag: str) -> str:
    where = shlex.quote(folder.rstrip("/"))
    return f'for n in {quoted_names}; do f={where}/"$n"; [ -f "$f" ] || continue; {_dump(tag)}; done'


def _batched(names: list[str], command_for: Callable[[str], str]) -> list[str]:
    """As few commands as keep each under the session's line limit."""
    commands: list[str] = []
    batch: list[str] = []
    for name in names:
        trial = " ".join(shlex.quote(n) for n in [*batch, name])
        if batch and len(command_for(trial)) > _MAX_COMMAND:
            commands.append(command_for(" ".join(shlex.quote(n) for n in batch)))
            batch = []
        batch.append(name)
    if batch:
        commands.append(command_for(" ".join(shlex.quote(n) for n in batch)))
    return commands


def _tag() -> str:
    return "SFTRENEW-FILE-" + secrets.token_hex(6)


def _dump(tag: str) -> str:
    return f'echo "{tag} $(sha256sum < "$f" | cut -d" " -f1) $f"; base64 -w0 < "$f"; echo'


def _decode(session: DeviceSession, output: str, tag: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if not line.startswith(tag + " "):
            continue
        _, digest, path = line.split(" ", 2)
        body = lines[index + 1] if index + 1 < len(lines) else ""
        try:
            data = base64.b64decode(body, validate=True)
        except binascii.Error:
            raise DeviceUnreachableError(
                session.device, str(session.route), f"garbled read of {path}"
            ) from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise DeviceUnreachableError(
                session.device, str(session.route), f"checksum mismatch reading {path}"
            )
        files[path] = data
    return files
