"""The Cisco tools of a simulated device: `sftunnel_status.pl`, `generate_certs.pl`, `pmtool`.

Each is a small executable on the device's PATH (written by `sftlab.tools.install`) that runs this module,
in a process of its own for every call, so it imports only what `sftlab.tools.client` allows. Prompts
and output follow device-facts sections 2, 3 and 7.1; the work itself happens in the lab process, reached
over the control socket, because that is where the device's sftunnel lives.
"""

from __future__ import annotations

import os
import sys

from sftlab.tools import client

TYPE_CHECKING = False  # `typing`, `pathlib` and `collections.abc` would triple a tool's start (see client)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import TextIO

CONTINUE = "Do you want to continue? [yes/no]:"
GENERATE_INTRO = (
    "setting log file to /var/log/sf/sfca_generation.log\n"
    "\n"
    "You are about to generate new certificates for FMC and devices.\n"
    "After successful cert generation, device specific certs will be pushed automatically\n"
    "If the connection between FMC and a device is down, user needs to copy the certificates onto the device"
    " manually\n"
    "For more details on disconnected devices, use sftunnel_status.pl\n"
)
# ASSUMED: what the tools say to a non-root user; the real ones are run as root (device-facts 2.1, 3.1).
NOT_ROOT = "{tool}: must be run as root\n"


def main(argv: Sequence[str]) -> int:
    tool = argv[0].rpartition("/")[2]
    if os.environ.get("SFTLAB_LEVEL") != "root":
        sys.stderr.write(NOT_ROOT.format(tool=tool))
        return 1
    args = list(argv[1:])
    if tool == "sftunnel_status.pl":
        return _status(args)
    if tool == "generate_certs.pl":
        return _generate(sys.stdin, sys.stdout)
    if tool == "pmtool":
        return _pmtool(args)
    sys.stderr.write(f"{tool}: not a lab tool\n")
    return 127


def _request(op: str, **fields: object) -> client.Reply:
    return client.call(
        os.environ["SFTLAB_CONTROL"], {"op": op, "device": os.environ["SFTLAB_DEVICE"], **fields}
    )


def _emit(reply: client.Reply) -> int:
    sys.stdout.write(str(reply.get("stdout", "")))
    sys.stdout.flush()
    sys.stderr.write(str(reply.get("stderr", "")))
    return int(reply.get("code", 0))


def _status(args: list[str]) -> int:
    return _emit(_request("status", peer=args[0] if args else None))


def _ask(stdin: TextIO, stdout: TextIO) -> bool:
    stdout.write(CONTINUE)
    stdout.flush()
    answer = stdin.readline()
    return answer.strip() == "yes"


def _generate(stdin: TextIO, stdout: TextIO) -> int:
    stdout.write(GENERATE_INTRO)
    if not _ask(stdin, stdout):
        stdout.write("Aborted.\n")
        return 1
    expiry = _request("ca_expiry")
    stdout.write("\n" + str(expiry["stdout"]))
    if not _ask(stdin, stdout):
        stdout.write("Aborted.\n")
        return 1
    code = _emit(_request("regenerate"))
    # A harmless Perl interpreter message the real script prints at exit (device-facts 3.2).
    stdout.write("Scalars leaked: 1\n")
    return code


PMTOOL_USAGE = "Usage: pmtool restartbyid <id> | status\n"


def _pmtool(args: list[str]) -> int:
    if len(args) == 2 and args[0].lower() == "restartbyid":
        if args[1].lower() != "sftunnel":
            sys.stderr.write(f"pmtool: no process with id {args[1]} in the lab (only sftunnel)\n")
            return 1
        return _emit(_request("restart"))
    if args == ["status"]:
        return _emit(_request("pmtool_status"))
    sys.stderr.write(PMTOOL_USAGE)
    return 2
