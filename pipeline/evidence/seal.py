"""Sealing an evidence pack and checking one: a SHA-256 over its canonical form, and an HMAC (pure).

The file is one JSON object:

    {"content": {...the EvidencePack...}, "format": "sftrenew-evidence-pack", "version": 1,
     "sha256": "<hex>", "hmac": {"algorithm": "HMAC-SHA256", "key": "<how the key is made>",
                                 "key_id": "<8 hex>", "value": "<hex>"}}

- The canonical form of `{"format", "version", "content"}` is its JSON with sorted keys, no whitespace and
  UTF-8 (`canonical`); `sha256` is the SHA-256 of those bytes and `hmac.value` their HMAC-SHA256.
- The HMAC key is derived with HKDF-SHA256 from `SFTRENEW_ARTIFACT_KEY` (no salt, info `PACK_KEY_INFO`):
  no new secret to hand out, and the artifact key itself is never used for anything but sealing artifacts.
  `key_id` (the start of the SHA-256 of the derived key) tells a pack signed with another key apart from a
  tampered one, and says nothing about the key.
- The file is written in one exact layout (sorted keys, two-space indent, UTF-8, a final newline), so that
  `check` can ask for the very bytes sftrenew wrote: any byte changed anywhere, content, seal or spacing,
  fails one of its checks.

The SHA-256 alone proves nothing to someone who can rewrite the file (they can recompute it); the HMAC does,
to anyone holding the key. Both are checked.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pipeline.evidence.model import SCHEMA_VERSION, EvidencePack

FORMAT: Final = "sftrenew-evidence-pack"
PACK_KEY_INFO: Final = b"sftrenew evidence pack v1"
ALGORITHM: Final = "HMAC-SHA256"
KEY_TEXT: Final = "HKDF-SHA256(SFTRENEW_ARTIFACT_KEY, salt none, info 'sftrenew evidence pack v1')"
_ENVELOPE: Final = frozenset({"format", "version", "content", "sha256", "hmac"})
_HMAC_FIELDS: Final = frozenset({"algorithm", "key", "key_id", "value"})
_KEY_ID_BYTES = 4


class Failure(enum.Enum):
    """Which check a pack failed, in the order they run."""

    NOT_A_PACK = "not a pack"
    UNKNOWN_VERSION = "unknown version"
    DIGEST_MISMATCH = "digest mismatch"
    HMAC_MISMATCH = "HMAC mismatch"
    LAYOUT_CHANGED = "bytes changed"


@dataclass(frozen=True)
class SealedPack:
    """A pack as written: the file's bytes, and the digest and key id it carries."""

    data: bytes
    sha256: str
    key_id: str


@dataclass(frozen=True)
class CheckReport:
    """What `check` found: `failure` None when the pack is intact; `message` says what, in one line."""

    failure: Failure | None
    message: str

    @property
    def intact(self) -> bool:
        return self.failure is None


def canonical(value: object) -> bytes:
    """JSON with sorted keys, no whitespace, UTF-8 (no ASCII escapes): one byte string per value."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def layout(value: object) -> bytes:
    """The file's one layout: sorted keys, two-space indent, UTF-8, a final newline."""
    text = json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode()


def pack_key(artifact_key: bytes) -> bytes:
    """The HMAC key of evidence packs, derived from the raw artifact key (`store.crypto.artifact_key`)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PACK_KEY_INFO).derive(artifact_key)


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).digest()[:_KEY_ID_BYTES].hex()


def seal(pack: EvidencePack, *, artifact_key: bytes) -> SealedPack:
    """The pack's file: its content with the SHA-256 of its canonical form and the HMAC of that form."""
    signed = {"format": FORMAT, "version": SCHEMA_VERSION, "content": pack.model_dump(mode="json")}
    body = canonical(signed)
    key = pack_key(artifact_key)
    digest = hashlib.sha256(body).hexdigest()
    sealed = {
        **signed,
        "sha256": digest,
        "hmac": {
            "algorithm": ALGORITHM,
            "key": KEY_TEXT,
            "key_id": key_id(key),
            "value": hmac.new(key, body, hashlib.sha256).hexdigest(),
        },
    }
    return SealedPack(layout(sealed), digest, key_id(key))


def check(pack_bytes: bytes, *, artifact_key: bytes) -> CheckReport:
    """Whether `pack_bytes` are a pack exactly as `seal` wrote it with this artifact key; when not, the first
    check that failed and why (never a value of the key)."""
    try:
        value = json.loads(pack_bytes.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        return CheckReport(Failure.NOT_A_PACK, f"not UTF-8 JSON ({type(exc).__name__})")
    problem = _envelope_problem(value)
    if problem is not None:
        return CheckReport(Failure.NOT_A_PACK, problem)
    if value["version"] != SCHEMA_VERSION or isinstance(value["version"], bool):
        return CheckReport(
            Failure.UNKNOWN_VERSION,
            f"version {value['version']!r}; this sftrenew reads version {SCHEMA_VERSION} (use the sftrenew "
            "that wrote it)",
        )
    body = canonical({name: value[name] for name in ("format", "version", "content")})
    digest = hashlib.sha256(body).hexdigest()
    if not hmac.compare_digest(digest, str(value["sha256"])):
        return CheckReport(
            Failure.DIGEST_MISMATCH, f"the content's SHA-256 is {digest}, the pack says {value['sha256']}"
        )
    failed = _check_hmac(value["hmac"], body, pack_key(artifact_key))
    return failed or _check_layout(value, pack_bytes, digest)


def _no_constant(name: str) -> object:
    """NaN and Infinity are not JSON: no pack holds them."""
    raise ValueError(f"{name} is not JSON")


def _envelope_problem(value: object) -> str | None:
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        return f'no "format": "{FORMAT}" in a JSON object'
    if set(value) != _ENVELOPE:
        return f"its top-level keys are {sorted(value)}, a pack has {sorted(_ENVELOPE)}"
    seal_ = value["hmac"]
    if not isinstance(seal_, dict) or set(seal_) != _HMAC_FIELDS:
        return f'its "hmac" is not an object with {sorted(_HMAC_FIELDS)}'
    if not isinstance(value["content"], dict) or not isinstance(value["sha256"], str):
        return 'its "content" is not an object, or its "sha256" not a string'
    return None


def _check_hmac(seal_: dict[str, object], body: bytes, key: bytes) -> CheckReport | None:
    if (seal_["algorithm"], seal_["key"]) != (ALGORITHM, KEY_TEXT):
        return CheckReport(
            Failure.HMAC_MISMATCH, f"the HMAC is said to be {seal_['algorithm']} with {seal_['key']}"
        )
    if seal_["key_id"] != key_id(key):
        return CheckReport(
            Failure.HMAC_MISMATCH,
            f"signed with another key (key id {seal_['key_id']}; SFTRENEW_ARTIFACT_KEY gives key id "
            f"{key_id(key)}): set the artifact key of the installation that wrote it",
        )
    expected = hmac.new(key, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, str(seal_["value"])):
        return CheckReport(Failure.HMAC_MISMATCH, "the HMAC does not match the content: the pack was changed")
    return None


def _check_layout(value: dict[str, object], pack_bytes: bytes, digest: str) -> CheckReport:
    if layout(value) != pack_bytes:
        return CheckReport(
            Failure.LAYOUT_CHANGED,
            "the content and its seal check out, but the file's bytes are not the ones sftrenew wrote "
            "(spacing or layout changed)",
        )
    return CheckReport(None, f"intact: SHA-256 {digest}, HMAC-SHA256 checked")
