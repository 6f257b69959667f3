"""What a device prints at login and in CLISH, and what each CLISH line asks for: pure text, decisions.

The SSH adapter (`lab.server`) does the I/O; this module decides. Texts follow device-facts sections 1 and 12;
where a source is silent (an unknown CLISH command, the FTD banner's product line) the choice is marked
ASSUMED.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Kind = Literal["fmc", "ftd"]

CLISH_PROMPT = "> "
PASSWORD_PROMPT = "Password:"
SUDO_RETRY = "Sorry, try again.\n"
SUDO_GAVE_UP = "sudo: 3 incorrect password attempts\n"
SUDO_TRIES = 3
# ASSUMED (device-facts 1.1): the standard sudo lecture, printed before the first Password: of a session.
SUDO_LECTURE = (
    "\n"
    "We trust you have received the usual lecture from the local System\n"
    "Administrator. It usually boils down to these three things:\n"
    "\n"
    "    #1) Respect the privacy of others.\n"
    "    #2) Think before you type.\n"
    "    #3) With great power comes great responsibility.\n"
    "\n"
)
# ASSUMED: the wording of CLISH's complaint about a command it does not know.
CLISH_UNKNOWN = "Syntax error: Illegal command line\n"


@dataclass(frozen=True)
class DeviceFace:
    """What a device shows of itself at the prompt: identity and software."""

    kind: Kind
    hostname: str
    uuid: str
    sw_version: str
    sw_build: str
    model: str


def banner(face: DeviceFace) -> str:
    """The login banner (device-facts 1.1 FTD, 1.2 FMC), ending with the blank line before the prompt."""
    if face.kind == "fmc":
        product = (
            f"Cisco Secure Firewall Management Center for VMware v{face.sw_version} (build {face.sw_build})"
        )
        fxos = "Cisco Firepower Extensible Operating System (FX-OS) v2.12.0 (build 499)"
        year = "2023"
    else:
        # ASSUMED: the FTD product line mirrors the FMC one (the source cut it off).
        product = f"Cisco Firepower Threat Defense for VMware v{face.sw_version} (build {face.sw_build})"
        fxos = "Cisco Firepower Extensible Operating System (FX-OS) v2.10.1 (build 1400)"
        year = "2022"
    return (
        f"Copyright 2004-{year}, Cisco and/or its affiliates. All rights reserved.\n"
        "Cisco is a registered trademark of Cisco Systems, Inc.\n"
        "All other trademarks are property of their respective owners.\n"
        "\n"
        f"{fxos}\n"
        f"{product}\n"
        "\n"
    )


def last_login_line(when_utc: datetime, from_ip: str) -> str:
    """ASSUMED (device-facts 1.1): `Last login: Www Mmm dd HH:MM:SS yyyy from <ip>`."""
    return f"Last login: {when_utc.strftime('%a %b %e %H:%M:%S %Y')} from {from_ip}\n"


def show_version(face: DeviceFace) -> str:
    """CLISH `show version` (device-facts 1.2; column alignment ASSUMED)."""
    title = "FMC" if face.kind == "fmc" else face.hostname
    return (
        f"-----------------[ {title} ]-----------------\n"
        f"{'Model':<26}: {face.model} Version {face.sw_version} (Build {face.sw_build})\n"
        f"{'UUID':<26}: {face.uuid}\n"
        f"{'Rules update version':<26}: 2023-10-02-002-vrt\n"
        f"{'LSP version':<26}: lsp-rel-20231002-1553\n"
        f"{'VDB version':<26}: 372\n"
        "----------------------------------------------------\n"
    )


def bash_prompt(user: str, hostname: str, cwd: str, home: str) -> str:
    """bash's `\\u@\\h:\\w\\$ `: the home folder shows as `~`, root's prompt ends in `#`."""
    if cwd == home:
        shown = "~"
    elif cwd.startswith(home + "/"):
        shown = "~" + cwd[len(home) :]
    else:
        shown = cwd
    return f"{user}@{hostname}:{shown}{'#' if user == 'root' else '$'} "


class Clish(enum.Enum):
    """What a CLISH line asks the session to do."""

    NOTHING = "nothing"
    EXPERT = "expert"
    EXIT = "exit"
    SHOW_VERSION = "show version"
    TUNNEL_STATUS = "sftunnel-status"
    TUNNEL_STATUS_BRIEF = "sftunnel-status-brief"
    UNKNOWN = "unknown"


_CLISH_WORDS = {
    "expert": Clish.EXPERT,
    "exit": Clish.EXIT,
    "logout": Clish.EXIT,
    "show version": Clish.SHOW_VERSION,
    "sftunnel-status": Clish.TUNNEL_STATUS,
    "sftunnel-status-brief": Clish.TUNNEL_STATUS_BRIEF,
}


def clish_action(line: str, kind: Kind) -> Clish:
    """Decide what a CLISH line means. `sftunnel-status*` exist on the FTD CLI only (device-facts 2.1)."""
    words = " ".join(line.split())
    if not words:
        return Clish.NOTHING
    action = _CLISH_WORDS.get(words, Clish.UNKNOWN)
    if kind == "fmc" and action in (Clish.TUNNEL_STATUS, Clish.TUNNEL_STATUS_BRIEF):
        return Clish.UNKNOWN
    return action


_SUDO_SU = re.compile(r"^\s*sudo\s+(?:su|su\s+-|su\s+-l|su\s+root|-i|-s)\s*$")


def sudo_request(line: str) -> Literal["su", "su -"] | None:
    """Whether an expert-mode line asks for a root shell, and which kind (`sudo su -` is a login shell)."""
    if not _SUDO_SU.match(line):
        return None
    words = line.split()
    return "su -" if words[1:] in (["su", "-"], ["su", "-l"], ["-i"]) else "su"
