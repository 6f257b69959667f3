"""The known_hosts file as plain text: recording a key trusted on first use.

Only `fabric_session` decides which keys to trust (paramiko's policies); this module just appends the line,
safely when threads of this process and other worker processes append to the same file at once.
"""

from __future__ import annotations

import fcntl
import threading
from pathlib import Path

from pipeline.errors import ConfigError

_append_lock = threading.Lock()


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
