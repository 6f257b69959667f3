"""Restore one peer: put back the three files a renewal's push replaced, from the copies it kept there.

The push keeps a copy of each file before its first write (`<file>.sftrenew-<stamp>.bak`, never overwritten)
and the record keeps what the peer held then (`FilesBefore`: the folder, the copies' suffix, each file's
SHA-256). Decide first, from the record and from the copies' SHA-256 as the device computes them (pure:
`record_refusal`, `decide_restore`); a copy that is missing or differs from the record refuses the restore
before anything changes (`BackupMismatchError`).

Then act, in the peer's folder, never leaving a half-written file: each copy is copied to a temporary file
next to its target (`TEMP_GLOB`, which a later push or restore clears), mode 644 root:root, and checked by
SHA-256; only once all three check out are they renamed over the targets (atomic per file), and the targets
read back by SHA-256; then `pmtool restartbyid sftunnel`, and the targets checked once more. Everything stays
on the device: the key's bytes never cross the connection, and no command holds anything but names and
digests (the session turned the shell's history off anyway).
"""

from __future__ import annotations

import enum
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.devicepaths import PUSHED_FILES
from pipeline.devices.factory import SessionFactory
from pipeline.devices.session import TEMP_GLOB, DeviceSession, Route
from pipeline.errors import BackupMismatchError, DeviceError, WriteIntegrityError
from pipeline.material import FilesBefore
from pipeline.steps.push import RESTART_COMMAND

#: The temporary file a restore copies `<name>` to, next to it (a name `TEMP_GLOB` matches).
TEMP_SUFFIX = ".sftrenew-restore.tmp"


class RestoreAction(enum.Enum):
    RESTORE = "restore"
    REFUSE = "refuse"


@dataclass(frozen=True)
class RestoreDecision:
    action: RestoreAction
    #: Why a restore is refused: each file and what is wrong with its copy (names and digests only).
    reason: str = ""


def record_refusal(device: str, fmc: str, *, written: bool, recorded: FilesBefore | None) -> str | None:
    """Why the record alone refuses to restore the device's files for `fmc`, with the fix (None: it does
    not refuse)."""
    if not written:
        return (
            f"this renewal never wrote {device}'s files for {fmc} (it found them new, or never reached it), "
            "so it kept no copy there and has nothing to undo; `sftrenew status` shows what its push did"
        )
    if recorded is None:
        return (
            f"the record of {device}'s write for {fmc} says nothing of what it held before (written by an "
            "older sftrenew), so the copies on the device cannot be checked; put them back by hand "
            "(docs/user-guide.md)"
        )
    return None


def decide_restore(recorded: FilesBefore, copies: Mapping[str, str | None]) -> RestoreDecision:
    """RESTORE when each of the three copies is on the device with the SHA-256 the record says the file had
    before the renewal; otherwise REFUSE, naming every copy that is missing or differs. `copies`: file name
    -> SHA-256 of its copy (`<name><suffix>`) on the device, None or absent when it is missing."""
    problems = []
    for name, wanted in recorded.by_name().items():
        copy = f"{name}{recorded.suffix}"
        found = copies.get(name)
        if wanted is None:
            problems.append(f"{name} was not there before the renewal (no copy to put back)")
        elif found is None:
            problems.append(f"{copy} is missing")
        elif found != wanted:
            problems.append(f"{copy} has SHA-256 {found[:16]}, the record says {wanted[:16]}")
    if problems:
        return RestoreDecision(RestoreAction.REFUSE, "; ".join(problems))
    return RestoreDecision(RestoreAction.RESTORE)


@dataclass(frozen=True)
class RestoreOutcome:
    device: str
    route: Route
    folder: str
    suffix: str
    #: File name -> the SHA-256 it holds again (read back after the restart).
    restored: Mapping[str, str]

    def summary(self) -> str:
        files = ", ".join(f"{name} ({digest[:12]})" for name, digest in self.restored.items())
        return f"put back {files} in {self.folder} from the copies *{self.suffix}; sftunnel restarted"


def restore_files(session: DeviceSession, recorded: FilesBefore) -> RestoreOutcome:
    """Restore over an open root session (see the module docstring). BackupMismatchError before any change
    when the copies do not check out; WriteIntegrityError when the files do not read back as expected (each
    file is then its old or its restored self, whole: running the restore again finishes it)."""
    where = (session.device, str(session.route), recorded.folder)
    decision = decide_restore(recorded, _digests(session, recorded, _COPY))
    if decision.action is RestoreAction.REFUSE:
        raise BackupMismatchError(*where, decision.reason)
    wanted = {name: digest for name, digest in recorded.by_name().items() if digest is not None}
    copied = _run_digests(session, _copy_command(recorded))
    if copied != wanted:
        session.run(f"cd {shlex.quote(recorded.folder)} && rm -f {TEMP_GLOB}", check=False)
        raise WriteIntegrityError(*where)
    placed = _run_digests(session, _rename_command(recorded))
    if placed != wanted:
        raise WriteIntegrityError(*where)
    session.run(RESTART_COMMAND)
    if _digests(session, recorded, _TARGET) != wanted:
        raise WriteIntegrityError(*where)
    return RestoreOutcome(session.device, session.route, recorded.folder, recorded.suffix, wanted)


def restore_once(factory: SessionFactory, device: str, recorded: FilesBefore) -> RestoreOutcome:
    """Open a session by the device's routes in order (direct, then its jump server when the direct one is
    unreachable), restore, close. Raises the last route's DeviceError when none opens."""
    last: DeviceError | None = None
    for route in factory.routes_for(device):
        try:
            session = factory.open(device, route)
        except DeviceError as exc:
            if not exc.retryable:
                raise
            last = exc
            continue
        try:
            return restore_files(session, recorded)
        finally:
            session.close()
    assert last is not None  # noqa: S101 - routes_for gives at least the direct route
    raise last


_TAG = "SFTRENEW-SHA"
#: Shell words, in the peer's folder inside `_loop`: a file's copy, its temporary file, the file itself.
_COPY = '"$f$S"'
_TEMP = '"$t"'
_TARGET = '"$f"'


def _loop(recorded: FilesBefore, body: str, *, first: str = "true") -> str:
    """In the peer's folder, `first`, then `body` for each of the three file names (`$f`; `$S` is the copies'
    suffix, `$t` the file's temporary name). Exits 0 whatever `body` did: what it printed says."""
    names = " ".join(shlex.quote(name) for name in PUSHED_FILES)
    return (
        f"cd {shlex.quote(recorded.folder)} && {first} && S={shlex.quote(recorded.suffix)} && "
        f'for f in {names}; do t=".$f{TEMP_SUFFIX}"; {body}; done; true'
    )


def _show(path: str) -> str:
    """Print the tag, the SHA-256 of `path` and the file name: one line `_parse` reads."""
    return f'echo "{_TAG} $(sha256sum < {path} | cut -d" " -f1) $f"'


def _digests(session: DeviceSession, recorded: FilesBefore, path: str) -> dict[str, str]:
    """File name -> SHA-256 of `path` for each file where it is a regular file."""
    return _run_digests(session, _loop(recorded, f"[ -f {path} ] && {_show(path)}"))


def _copy_command(recorded: FilesBefore) -> str:
    """Temporary files cleared, then each copy to its temporary file (mode and owner set), SHA-256 shown."""
    body = f"cp {_COPY} {_TEMP} && chmod 644 {_TEMP} && chown root:root {_TEMP} && {_show(_TEMP)}"
    return _loop(recorded, body, first=f"rm -f {TEMP_GLOB}")


def _rename_command(recorded: FilesBefore) -> str:
    """Each temporary file renamed over its target (only if it is there), the target's SHA-256 shown."""
    return _loop(recorded, f"[ -f {_TEMP} ] && mv -f {_TEMP} {_TARGET} && {_show(_TARGET)}")


def _run_digests(session: DeviceSession, command: str) -> dict[str, str]:
    """Run a command built with `_show` (its tag made unique to this run) and read what it showed."""
    tag = f"{_TAG}-{secrets.token_hex(4)}"
    found: dict[str, str] = {}
    for line in session.run(command.replace(_TAG, tag)).output.splitlines():
        parts = line.split(" ")
        if len(parts) == len(("tag", "digest", "name")) and parts[0] == tag and parts[2] in PUSHED_FILES:
            found[parts[2]] = parts[1]
    return found
