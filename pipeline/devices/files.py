"""Reading many device files with few commands, over any `DeviceSession`.

A backup or a regeneration read-back touches hundreds of files on a large FMC (three per peer); one command
round trip per file would dominate the run, and so would a few processes per file on the device. A read
lists the files once, then prints their sizes (`stat`), the device's own SHA-256 of each (`sha256sum`) and
all their bytes as one base64 stream, each by one program for the whole list; the stream is cut by the sizes
and every digest checked here, so a file garbled in transit is an error, not a silently wrong backup.
Command lines stay short (sessions refuse long ones, so that a terminal never wraps what is typed): a tree
is walked with `find` on the device, and an explicit list of paths is sent in small batches.
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
    return f"find {quoted} -type f {name_test}{path_test}-print 2>/dev/null"  # a missing root is skipped


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
    listing = f"mapfile -t f < <({_find(roots, names, path_glob)})"
    return _decode(session, session.run(_dump(tag, listing), timeout=600.0, check=False).output, tag)


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
            files.update(_decode(session, session.run(command, check=False).output, tag))
    return files


def _read_names(folder: str, quoted_names: str, *, tag: str) -> str:
    where = shlex.quote(folder.rstrip("/"))
    listing = f'd={where}; f=(); for n in {quoted_names}; do [ -f "$d/$n" ] && f+=("$d/$n"); done'
    return _dump(tag, listing)


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
    return "SFTRF" + secrets.token_hex(6)


def _dump(tag: str, listing: str) -> str:
    """`listing` fills the array `f` with paths; then their sizes, their SHA-256 and all their bytes, each
    from one program for the whole list (`xargs` splits a list too long for one command line), so that a
    read costs a handful of processes on the device, not four per file (at 300 peers a backup was 9,600).
    Each part is marked, and a part that fails stops the rest: `decode_dump` finds a marker missing. The
    exit status is not checked (`check=False`): a failed command's error would carry its output's tail,
    which may be a key's base64; the markers say whether the read completed, and the error names no data."""
    return (
        f't={tag}; x() {{ [ ${{#f[@]}} = 0 ] || printf \'%s\\0\' "${{f[@]}}" | xargs -0 "$@" --; }}; '
        f'{listing}; echo "$t n"; x stat -c "%s %n" && echo "$t s" && x sha256sum && echo "$t d" '
        f'&& x cat | base64 && echo "$t e"'
    )


def _decode(session: DeviceSession, output: str, tag: str) -> dict[str, bytes]:
    try:
        return decode_dump(output, tag)
    except ValueError as exc:
        raise DeviceUnreachableError(session.device, str(session.route), str(exc)) from None


def decode_dump(output: str, tag: str) -> dict[str, bytes]:
    """The files of one `_dump`'s output, by path; ValueError (naming a path, never data) when the output
    is cut short or garbled, or a file's bytes do not match the digest the device computed."""
    sections = _sections(output, tag)
    sized = [line.split(" ", 1) for line in sections["n"]]
    if any(len(item) != 2 or not item[0].isdigit() for item in sized):
        raise ValueError("garbled file list in a read")
    sums = [line.split("  ", 1) for line in sections["s"]]
    if len(sums) != len(sized) or any(len(item) != 2 for item in sums):
        raise ValueError("garbled checksum list in a read")
    try:
        data = base64.b64decode("".join(sections["d"]), validate=True)
    except binascii.Error:
        raise ValueError("garbled data in a read") from None
    if len(data) != sum(int(size) for size, _ in sized):
        raise ValueError(f"a read of {len(sized)} files came back short or long (changed while read?)")
    files: dict[str, bytes] = {}
    offset = 0
    for (size, path), (digest, summed) in zip(sized, sums, strict=True):
        if summed != path:
            raise ValueError(f"checksum list out of step with the file list at {path}")
        body = data[offset : offset + int(size)]
        offset += int(size)
        if hashlib.sha256(body).hexdigest() != digest:
            raise ValueError(f"checksum mismatch reading {path}")
        files[path] = body
    return files


def _sections(output: str, tag: str) -> dict[str, list[str]]:
    """The lines after each of `<tag> n`, `<tag> s` and `<tag> d`, up to `<tag> e`; ValueError unless all
    four markers came, in that order."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    marks = ""
    for line in output.splitlines():
        if line.startswith(f"{tag} "):
            mark = line[len(tag) + 1 :]
            marks += mark
            if mark == "e":
                break
            current = sections.setdefault(mark, [])
        elif current is not None:
            current.append(line)
    if marks != "nsde":
        raise ValueError("a read failed on the device or was cut short (a file changed or vanished?)")
    return sections
