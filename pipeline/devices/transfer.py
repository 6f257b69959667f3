"""Files through a typed shell: the command of one atomic write of several files, and the checks on what
comes back.

Pure: this module builds command text and checks output; `root_shell` types it. A write travels as ONE
command, typed as a few dozen physical lines joined by backslash-newline continuations (each line short
enough to type, `framing.MAX_COMMAND`), so a whole set of files costs one round trip, not one per 300
bytes: the bytes go as base64 arguments of `printf` (a bash builtin: no process, no argument list shows
them) piped into `base64 -d`; the device then checks each temp file's SHA-256 against the digest sent, sets
mode and owner, renames every temp file over its target, and prints the targets' `sha256sum`, which is
checked here. A failure before the renames removes the temp files and names the stage that failed; the
temp files are `.<name>.sftrenew-<nonce>.tmp` next to their target (`session.TEMP_GLOB`). No message raised
here holds file content or base64.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import re
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.devices import framing

_OWNER_RE = re.compile(r"[a-z_][\w.-]*:[a-z_][\w.-]*\Z")
_SHA256_RE = re.compile(r"\b([0-9a-f]{64})\b")
_SUM_LINE_RE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$", re.MULTILINE)
#: What the write prints when a stage fails, before its exit status: `<tag><stage>`.
_FAILED_TAG = "sftrenew-write-failed:"
_FAILED_RE = re.compile(re.escape(_FAILED_TAG) + r"(\w+)")
#: Base64 characters per typed data line: the line is the chunk in quotes plus ` \`.
_CHUNK = framing.MAX_COMMAND - 8

#: The stages of a write, in order, and how an error names them.
STAGES = {
    "upload": "upload",
    "check": "check the uploaded bytes (sha256)",
    "mode": "chmod and chown the temp files",
    "rename": "rename into place",
    "readback": "read back the sha256 of",
}


class TransferCheckError(ValueError):
    """What the device sent back does not check out. The message is safe to show: it never holds file data."""


@dataclass(frozen=True)
class WritePlan:
    """One atomic write of several files as the physical lines of one command, each short enough to type.

    Every target is replaced by a rename within its own folder (atomic per file); the renames run only once
    every temp file checked out, so a failure before them leaves every target as it was. A connection lost
    between two renames leaves some targets new and the others old, each whole.
    """

    targets: tuple[str, ...]
    digests: tuple[str, ...]
    lines: tuple[str, ...]

    @classmethod
    def build(cls, files: Mapping[str, bytes], mode: int, owner: str) -> WritePlan:
        """Every line of the write, checked: ValueError for a bad path, mode or owner, before any is sent."""
        if not _OWNER_RE.match(owner) or not 0 <= mode <= 0o7777:
            raise ValueError(f"owner must be user:group and mode a permission number, got {owner!r} {mode:o}")
        if not files:
            raise ValueError("write_files_atomic needs at least one file")
        targets, temps, digests = [], [], []
        for path in files:
            folder, name = posixpath.split(path)
            if not posixpath.isabs(path) or not name or posixpath.normpath(path) != path:
                raise ValueError(f"write_files_atomic needs absolute, normal file paths, got {path!r}")
            targets.append(path)
            temps.append(posixpath.join(folder, f".{name}.sftrenew-{secrets.token_hex(6)}.tmp"))
            digests.append(hashlib.sha256(files[path]).hexdigest())
        if len(set(targets)) != len(targets):  # pragma: no cover - a Mapping's keys are unique
            raise ValueError("a file is named twice")
        q_tmp = [shlex.quote(t) for t in temps]
        q_dst = [shlex.quote(t) for t in targets]
        lines = ["( umask 077; s=upload"]
        for data, tmp in zip(files.values(), q_tmp, strict=True):
            encoded = base64.b64encode(data).decode("ascii")
            lines.append("&& printf '%s' ''")
            lines.extend(f"'{encoded[i : i + _CHUNK]}'" for i in range(0, len(encoded), _CHUNK))
            lines.append(f"| base64 -d > {tmp}")
        # One `sha256sum -c` checks every temp file against the digest sent (`printf` is a builtin).
        lines.append("&& s=check && printf '%s  %s\\n'")
        lines.extend(f"{digest} {tmp}" for tmp, digest in zip(q_tmp, digests, strict=True))
        lines.append("| sha256sum -c - > /dev/null")
        lines.append(f"&& s=mode && chmod {mode:o} {' '.join(q_tmp)}")
        lines.append(f"&& chown {owner} {' '.join(q_tmp)}")
        lines.append("&& s=rename")
        # `mv` onto a folder would move the file into it; refuse instead (`mv -T` is GNU-only).
        lines.extend(f"&& [ ! -d {dst} ]" for dst in q_dst)
        lines.extend(f"&& mv -f {tmp} {dst}" for tmp, dst in zip(q_tmp, q_dst, strict=True))
        lines.append(f"&& s=readback && sha256sum {' '.join(q_dst)}")
        lines.append(f'|| {{ r=$?; rm -f {" ".join(q_tmp)}; echo "{_FAILED_TAG}$s"; exit $r; }} )')
        plan = cls(tuple(targets), tuple(digests), tuple(lines))
        framing.frame_lines(plan.lines, "")  # ValueError now, before anything is sent
        return plan

    def failed_stage(self, output: str) -> str:
        """What a failed write was doing, from its output (the stage tag it printed)."""
        found = _FAILED_RE.search(output)
        return STAGES.get(found.group(1), "write") if found else "write"

    def check_written(self, output: str) -> None:
        """TransferCheckError unless the read-back holds every target's `sha256sum` of the data sent."""
        got = {path: digest for digest, path in _SUM_LINE_RE.findall(output)}
        for path, digest in zip(self.targets, self.digests, strict=True):
            if got.get(path) != digest:
                found = got.get(path, "none")
                raise TransferCheckError(f"sha256 of {path} on the device: {found}, sent {digest}")


@dataclass(frozen=True)
class ReadOutcome:
    """A file's bytes as received, and the SHA-256 the device computed for them (they match)."""

    data: bytes
    digest: str


def read_command(path: str) -> str:
    """One line printing the file's `sha256sum`, then its bytes as base64 (see `check_read`)."""
    quoted = shlex.quote(path)
    return f"sha256sum {quoted} && base64 {quoted}"


def check_read(output: str) -> ReadOutcome:
    """The bytes of a successful `read_command`'s output; TransferCheckError when the first line holds no
    digest or the decoded bytes do not match it (the message withholds the output: it is file data)."""
    head, _, body = output.partition("\n")
    digest = _SHA256_RE.search(head)
    if digest is None:
        raise TransferCheckError("(unexpected output withheld)")
    try:
        data = base64.b64decode("".join(body.split()), validate=True)
    except ValueError:
        data = b""
    if hashlib.sha256(data).hexdigest() != digest.group(1):
        raise TransferCheckError(
            "(file data withheld) the bytes received do not match the device's sha256sum"
        )
    return ReadOutcome(data, digest.group(1))
