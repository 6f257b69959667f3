"""Who an operator's command records as having asked: the one rule of every command that records who.

`--by NAME` when given, else `SFTRENEW_OPERATOR`, else the login name. In a container the login name is the
image's user (`sftrenew`), which names nobody: there, pass `--by` or `docker compose exec -e
SFTRENEW_OPERATOR="$USER" ...` (docs/user-guide.md, "Running it").
"""

from __future__ import annotations

import getpass
import os

from pipeline.settings import Settings


def operator_name(by: str | None, settings: Settings) -> str:
    """`by` (the command's `--by`), else the settings' operator (`SFTRENEW_OPERATOR`), else the login name
    (`uid N` for a user the system has no name for)."""
    if by and by.strip():
        return by.strip()
    if settings.operator and settings.operator.strip():
        return settings.operator.strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no LOGNAME/USER and no passwd entry (an arbitrary container uid)
        return f"uid {os.getuid()}"
