"""A `generate_certs.pl` run (device-facts 3.2) and the FAILED_PUSH file it leaves (3.3)."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from datetime import datetime

from pipeline.parsing.dates import gmt_date_utc
from pipeline.parsing.text import ParseError, lines, stripped_lines


@dataclass(frozen=True)
class FailedPushLine:
    """`Failed to push to <name> = <destination path on the FTD>` (device-facts 3.2)."""

    name: str
    path: str


@dataclass(frozen=True)
class RegenOutput:
    """What a `generate_certs.pl` run said: the old CA's expiry, failed pushes, and whether it aborted."""

    days_left: int | None
    ca_not_after: str | None
    ca_not_after_utc: datetime | None
    failed: tuple[FailedPushLine, ...]
    failed_push_path: str | None
    aborted: bool

    @property
    def failed_devices(self) -> tuple[str, ...]:
        """Device names with at least one failed push, in order of first mention."""
        return tuple(dict.fromkeys(line.name for line in self.failed))


@dataclass(frozen=True)
class FailedPush:
    """One FAILED_PUSH line: `FTD_UUID FTD_NAME FTD_IP SOURCE DEST`, paths byte for byte (3.3)."""

    uuid: str
    name: str
    ip: str
    source: str
    destination: str

    @property
    def source_normalized(self) -> str:
        """The source path with `certs_pushed//x` folded to `certs_pushed/x` (posixpath.normpath)."""
        return posixpath.normpath(self.source)

    @property
    def destination_normalized(self) -> str:
        return posixpath.normpath(self.destination)

    @property
    def file_name(self) -> str:
        """`cacert.pem`, `sftunnel-key.pem` or `sftunnel-cert.pem`."""
        return posixpath.basename(self.destination)


_EXPIRY = re.compile(r"Current ca_root expires in (?P<days>-?\d+) days - at (?P<date>.+?)\s*")
_FAILED = "Failed to push to "
_SUMMARY = re.compile(r"Some files were failed to be pushed to remote peers\..*\bcheck (?P<v>\S+)\s*")
_PROMPT = "Do you want to continue? [yes/no]:"
_LANDMARKS = ("You are about to generate new certificates", _PROMPT, _FAILED, "Current ca_root expires")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def parse_generate_certs(text: str) -> RegenOutput:
    """Read a `generate_certs.pl` run (device-facts 3.2): its output alone or a pty transcript.

    The banner, prompts, echoed answers and `Scalars leaked: N` are ignored. A `Failed to push to` line is
    split on its last ` = `, so device names may contain spaces. Raises `ParseError` when the text has none
    of the script's landmarks, or a failure line has no ` = <path>`.
    """
    if not any(mark in text for mark in (*_LANDMARKS, "Aborted.")):
        raise ParseError("expected generate_certs.pl output (its banner or 'Do you want to continue?')")
    days_left: int | None = None
    not_after: str | None = None
    failed: list[FailedPushLine] = []
    summary: str | None = None
    aborted = False
    for number, raw in enumerate(stripped_lines(text), start=1):
        line = raw.rsplit(_PROMPT, 1)[-1].strip()
        if match := _EXPIRY.fullmatch(line):
            days_left, not_after = int(match["days"]), match["date"]
        elif line.startswith(_FAILED):
            name, sep, path = line.removeprefix(_FAILED).rpartition(" = ")
            if not sep or not name.strip() or not path.startswith("/"):
                raise ParseError(f"line {number}: expected 'Failed to push to <device> = <path>'")
            failed.append(FailedPushLine(name.strip(), path))
        elif match := _SUMMARY.fullmatch(line):
            summary = match["v"]
        elif line == "Aborted.":
            aborted = True
    return RegenOutput(
        days_left=days_left,
        ca_not_after=not_after,
        ca_not_after_utc=gmt_date_utc(not_after) if not_after is not None else None,
        failed=tuple(failed),
        failed_push_path=summary,
        aborted=aborted,
    )


def parse_failed_push(text: str) -> tuple[FailedPush, ...]:
    """Read a FAILED_PUSH file: `FTD_UUID FTD_NAME FTD_IP SOURCE DEST` per line (device-facts 3.3).

    The first field is the UUID, the last two the paths, the one before them the IP (or host name, as
    registered), and everything between UUID and IP the name, exactly as written (it may hold spaces).
    Blank lines are skipped; any other line that does not fit is a `ParseError` naming its line number.
    """
    entries: list[FailedPush] = []
    for number, line in enumerate(lines(text), start=1):
        if not line.strip():
            continue
        entries.append(_failed_push_line(line, number))
    return tuple(entries)


def _failed_push_line(line: str, number: int) -> FailedPush:
    expected = f"line {number}: expected 'FTD_UUID FTD_NAME FTD_IP SOURCE_PATH DEST_PATH'"
    uuid, _, rest = line.partition(" ")
    head, *tail = rest.rsplit(" ", 3)
    if len(tail) != 3 or not head.strip():
        raise ParseError(f"{expected}; found {len(line.split())} fields")
    ip, source, destination = tail
    if not _UUID.fullmatch(uuid):
        raise ParseError(f"{expected}; the first field is not a UUID")
    if not (source.startswith("/") and destination.startswith("/")) or not ip or ip.startswith("/"):
        raise ParseError(f"{expected}; the last three fields must be an address and two absolute paths")
    return FailedPush(uuid=uuid, name=head, ip=ip, source=source, destination=destination)
