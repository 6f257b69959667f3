"""Files through a typed shell: the command lines of one atomic write, and the checks on what comes back.

Pure: this module builds command lines and checks output; `root_shell` types them. Files travel as base64 in
`printf` lines short enough to type (`framing.MAX_COMMAND`) and are checked by SHA-256 on both ends. A
write's temporary files are `.<name>.sftrenew-<nonce>.tmp[.b64]` next to its target (`session.TEMP_GLOB`).
No message raised here holds file content or base64.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import re
import secrets
import shlex
from dataclasses import dataclass

from pipeline.devices import framing

_CHUNK_FLOOR = 64
_OWNER_RE = re.compile(r"[a-z_][\w.-]*:[a-z_][\w.-]*\Z")
_SHA256_RE = re.compile(r"\b([0-9a-f]{64})\b")


class TransferCheckError(ValueError):
    """What the device sent back does not check out. The message is safe to show: it never holds file data."""


@dataclass(frozen=True)
class WritePlan:
    """The command lines of one atomic write, each short enough to type (`framing.MAX_COMMAND`).

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
    def build(cls, path: str, data: bytes, mode: int, owner: str) -> WritePlan:
        """Every line of the write, checked: ValueError for a bad path, mode or owner, before any is sent."""
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
            framing.frame(line, "")  # ValueError now, before anything is sent (the nonce is not checked)
        return plan

    def check_finished(self, output: str) -> None:
        """TransferCheckError unless the output of `finish` holds the `sha256sum` of the data sent."""
        found = _SHA256_RE.search(output)
        if found is None or found.group(1) != self.digest:
            got = found.group(1) if found else "none"
            raise TransferCheckError(f"sha256 on the device: {got}, sent {self.digest}")


def _chunk_lines(encoded: str, quoted_b64_path: str) -> tuple[str, ...]:
    """`printf` lines appending `encoded` to the .b64 file, each as long as a typed line allows."""
    budget = framing.MAX_COMMAND - len(f"printf '%s' '' >> {quoted_b64_path}")
    size = budget // 4 * 4
    if size < _CHUNK_FLOOR:
        raise ValueError(f"folder path too long to write in {framing.MAX_COMMAND}-character commands")
    return tuple(
        f"printf '%s' '{encoded[start : start + size]}' >> {quoted_b64_path}"
        for start in range(0, len(encoded), size)
    )


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
