"""`sftrenew report`: a renewal's evidence pack (JSON, HTML or Markdown), and `--check` of a JSON pack.

The edges of `pipeline.evidence`: the record is read from the database, the pack is sealed with a key
derived from `SFTRENEW_ARTIFACT_KEY`, and written to stdout or, atomically, to a file. Exit codes
(docs/cli.md): 0 written, or intact; 1 a pack that is not intact; 2 bad input (an unknown renewal, a file
that cannot be read or written, no artifact key); 4 the database does not answer.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine
from sqlmodel import Session

from pipeline import evidence, store
from pipeline.errors import ConfigError
from pipeline.evidence import RenewalRecord
from pipeline.settings import Settings
from pipeline.store.crypto import KEY_VARIABLE, artifact_key
from sftrenew.checks import engine_of

Sub = Any

FORMATS: Final = ("json", "html", "md")
#: A pack is no secret, but it is no one else's business either: the owner writes, the group reads.
FILE_MODE: Final = 0o640
EXIT_NOT_INTACT: Final = 1
_PAGES: Final[dict[str, evidence.Format]] = {"html": "html", "md": "md"}


def add_commands(sub: Sub) -> None:
    report = sub.add_parser(
        "report",
        help="a renewal's evidence pack (JSON, HTML or Markdown), or --check FILE: is a JSON pack intact",
    )
    report.add_argument("renewal", nargs="?", help="renewal id (`sftrenew history` lists them)")
    report.add_argument("--format", choices=FORMATS, help="json (the default, sealed), html or md")
    report.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="write it to FILE (atomically, mode 0640)"
    )
    report.add_argument(
        "--check",
        type=Path,
        metavar="FILE",
        help="say whether the JSON pack in FILE is intact (exit 1 if not)",
    )
    report.set_defaults(run=_report)


def _report(args: argparse.Namespace, settings: Settings) -> int:
    if args.check is not None:
        if args.renewal or args.format or args.output:
            raise ConfigError("report --check FILE takes no renewal id, --format or -o: check one pack alone")
        return _check(args.check, settings)
    if not args.renewal:
        raise ConfigError(
            "report: name a renewal id (`sftrenew history` lists them), or check a pack with --check FILE"
        )
    _pack_key(settings)  # before anything is read: a pack is never made unsigned
    if args.output is not None:
        _writable_folder(args.output)
    made = make_pack(engine_of(settings), settings, args.renewal, args.format or "json")
    if args.output is None:
        sys.stdout.buffer.write(made.data)
        sys.stdout.flush()
    else:
        write_atomically(args.output, made.data)
        what = f"{made.format}, SHA-256 {made.sha256}"
        print(f"{args.output}: evidence pack of renewal {made.renewal_id} ({what})")
    return 0


@dataclass(frozen=True)
class MadePack:
    renewal_id: str
    format: str
    data: bytes
    #: The SHA-256 of the sealed JSON pack (the HTML and Markdown show it too).
    sha256: str

    @property
    def filename(self) -> str:
        return f"sftrenew-evidence-{self.renewal_id}.{self.format}"


def make_pack(engine: Engine, settings: Settings, renewal_id: str, fmt: str) -> MadePack:
    """The renewal's evidence pack in `fmt` (json, html, md), sealed: what `sftrenew report` writes and the
    renewal page downloads. ConfigError for an unknown renewal or format, or no artifact key."""
    if fmt != "json" and fmt not in _PAGES:
        raise ConfigError(f"no evidence pack format {fmt!r}: json, html or md")
    key = _pack_key(settings)
    with store.open_session(engine) as db:
        record = read_record(db, renewal_id)
    if record is None:
        raise ConfigError(f"no renewal {renewal_id}; `sftrenew history` lists them")
    pack = evidence.build_pack(record, generated_at_utc=datetime.now(UTC), generator=_generator())
    sealed = evidence.seal(pack, artifact_key=key)
    data = sealed.data if fmt == "json" else evidence.render(pack, _PAGES[fmt], sealed=sealed).encode()
    return MadePack(record.renewal.id, fmt, data, sealed.sha256)


def read_record(db: Session, renewal_id: str) -> RenewalRecord | None:
    """Everything recorded about the renewal, in one session; None when there is no such renewal."""
    row = store.renewal(session=db, renewal_id=renewal_id)
    if row is None:
        return None
    fmcs = store.fmcs_of(session=db, renewal_id=row.id)
    return RenewalRecord(
        renewal=row,
        fmcs=fmcs,
        steps=store.steps_of(session=db, renewal_id=row.id),
        events=store.events_of(session=db, renewal_id=row.id),
        artifacts=store.artifacts_of(session=db, renewal_id=row.id),
        restarts=store.restarts_of(session=db, renewal_id=row.id),
        held=[
            held
            for fmc in fmcs
            for held in store.held_by_device(session=db, renewal_id=row.id, fmc=fmc.fmc).values()
        ],
        slots=[slot for fmc in fmcs for slot in store.slots(session=db, renewal_id=row.id, fmc=fmc.fmc)],
    )


def _check(path: Path, settings: Settings) -> int:
    key = _pack_key(settings)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {path}: {exc.strerror or type(exc).__name__}; name a pack that "
            "`sftrenew report ID -o FILE` wrote"
        ) from None
    result = evidence.check(data, artifact_key=key)
    if result.failure is not None:
        print(f"sftrenew: {path} is NOT intact: {result.failure.value}: {result.message}", file=sys.stderr)
        return EXIT_NOT_INTACT
    print(f"{path}: {result.message}")
    return 0


def _pack_key(settings: Settings) -> bytes:
    """The raw artifact key, from which a pack's HMAC key is derived (`pipeline.evidence.seal`)."""
    if settings.artifact_key is None:
        raise ConfigError(
            f"{KEY_VARIABLE} is not set: evidence packs are signed and checked with a key derived from it; "
            "set it to the key the workers use"
        )
    return artifact_key(settings.artifact_key)


def _generator() -> str:
    try:
        return f"sftrenew {metadata.version('sftrenew')}"
    except metadata.PackageNotFoundError:
        return "sftrenew"


def _writable_folder(path: Path) -> None:
    folder = path.absolute().parent
    if not folder.is_dir():
        raise ConfigError(f"-o {path}: the folder {folder} does not exist; create it or name another file")
    if path.is_dir():
        raise ConfigError(f"-o {path} is a folder; name a file in it")


def write_atomically(path: Path, data: bytes, *, mode: int = FILE_MODE) -> None:
    """Write `data` to `path` so that a reader sees the old file or the whole new one, never part: a
    temporary file in the same folder, flushed to disk, given `mode`, then renamed over `path`."""
    folder = path.absolute().parent
    try:
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror}; name a file in a folder you may write"
        ) from None
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise ConfigError(f"cannot write {path}: {exc.strerror}; name another file") from None
