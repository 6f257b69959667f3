"""The known_hosts file as plain text: checking it is usable, and recording a key trusted on first use.

Only `fabric_session` decides which keys to trust (paramiko's policies); this module checks the file before
any connection (`check_known_hosts`: the commands call it before they write anything) and appends a line,
safely when threads of this process and other worker processes append to the same file at once.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import threading
from pathlib import Path

from pipeline.errors import TOFU_SWITCH, ConfigError

_append_lock = threading.Lock()
#: host, key type, base64 key (after an optional @marker)
_FIELDS = 3


def append_host_key(known_hosts: Path, hostname: str, key_type: str, key_base64: str) -> None:
    """Append `hostname key_type key_base64` as one line, starting a new line if the file lacks a final one.

    Raises ConfigError when the file cannot be written.
    """
    line = f"{hostname} {key_type} {key_base64}\n"
    try:
        with _append_lock, known_hosts.open("a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # other worker processes may append at the same time
            if handle.seek(0, 2) and (handle.seek(-1, 2), handle.read(1))[1] != b"\n":
                line = "\n" + line
            handle.write(line.encode())
    except OSError as exc:
        raise ConfigError(f"cannot record a host key in {known_hosts}: {exc.strerror}") from None


def check_known_hosts(known_hosts: Path, *, tofu: bool) -> None:
    """Refuse, before any connection, a known_hosts file sftrenew cannot use: missing (unless trust on first
    use will make it), unreadable, not text, or with a line that is not `host key-type base64-key`.

    Raises ConfigError naming the file (and the line) and the fix.
    """
    if not known_hosts.exists():
        if tofu:
            if not known_hosts.parent.is_dir():
                raise ConfigError(
                    f"the folder of the known_hosts file {known_hosts} does not exist; create it or fix "
                    "known_hosts in the inventory (or SFTRENEW_KNOWN_HOSTS)"
                )
            return
        raise ConfigError(
            f"the known_hosts file {known_hosts} does not exist; make it with `ssh-keyscan -p PORT HOST >> "
            f"{known_hosts}` for every device and jump server (and check the keys out of band), or set "
            f"{TOFU_SWITCH} to record them on first use"
        )
    try:
        raw = known_hosts.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the known_hosts file {known_hosts}: {exc.strerror}") from None
    for number, line in enumerate(raw.splitlines(), start=1):
        problem = _line_problem(line)
        if problem:
            raise ConfigError(
                f"the known_hosts file {known_hosts}, line {number}: {problem}; fix or delete that line "
                "(ssh-keyscan writes good ones)"
            )


def _line_problem(raw: bytes) -> str | None:
    try:
        line = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return "not text (is this a known_hosts file?)"
    if not line or line.startswith("#"):
        return None
    fields = line.split()
    if fields[0].startswith("@"):  # @cert-authority, @revoked
        fields = fields[1:]
    if len(fields) < _FIELDS or not line.isprintable():
        return "not 'host key-type base64-key'"
    try:
        base64.b64decode(fields[2], validate=True)
    except binascii.Error:
        return "the key is not base64"
    return None
