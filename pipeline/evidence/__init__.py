"""The evidence pack: a renewal's record of proof, for a change board or an auditor (`sftrenew report`).

Pure: `build_pack` turns records already read into an `EvidencePack`; `seal` writes it as JSON with a
SHA-256 over its canonical form and an HMAC (key derived from the artifact key); `check` says whether a file
is a pack exactly as sealed; `render` makes the HTML page or Markdown from it. The command (the I/O: the
database, files) is `sftrenew.reporting`.
"""

from __future__ import annotations

from pipeline.evidence.build import RenewalRecord, build_pack
from pipeline.evidence.model import SCHEMA_VERSION, EvidencePack
from pipeline.evidence.render import Format, render
from pipeline.evidence.seal import CheckReport, Failure, SealedPack, check, seal

__all__ = [
    "SCHEMA_VERSION",
    "CheckReport",
    "EvidencePack",
    "Failure",
    "Format",
    "RenewalRecord",
    "SealedPack",
    "build_pack",
    "check",
    "render",
    "seal",
]
