"""Where a simulated device's absolute paths live inside its lab folder, and small file helpers.

Each device has a folder (its root); a device path such as `/etc/sf/ims.conf` maps to `root/etc/sf/ims.conf`
by a plain join, for both kinds. On an FTD the real files live under `root/ngfw/`, and the unprefixed
spellings (`/etc/sf`, `/var/sf`, `/var/log`, `/usr/local/sf/bin`) are relative symlinks into `ngfw/`
(device-facts 1.1: both spellings work), so both spellings reach the same file through the file system.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Literal, get_args

DeviceKind = Literal["fmc", "ftd"]

# Device paths mapped into a device's root (the bash bridge rewrites these); anything else is not the lab's.
DEVICE_PREFIXES: tuple[str, ...] = (
    "/etc/sf",
    "/var/sf",
    "/var/tmp",  # noqa: S108 - a device path, mapped into the device's lab folder
    "/var/log",
    "/ngfw",
    "/home/admin",
    "/Volume/home/admin",
    "/usr/local/sf/bin",
    "/root",
)

# On an FTD these device folders are symlinks to their `/ngfw` twins.
FTD_NGFW_LINKS: tuple[str, ...] = ("/etc/sf", "/var/sf", "/var/log", "/usr/local/sf/bin")

PEER_RECORD_FILE = "sftunnel.json"

# device-facts 5.3, verbatim without the document's arrows.
PROXYSSL_BLOCK = """\
proxyssl {
  proxy_cert /etc/sf/keys/sftunnel-cert.pem;
  proxy_key /etc/sf/keys/sftunnel-key.pem;
  proxy_cacert /etc/sf/ca_root/cacert.pem;
  proxy_crl /etc/sf/ca_root/crl.pem;
  proxy_cipher 1;
  proxy_tls_version TLSv1.2;
};
"""


@dataclass(frozen=True)
class PeerRecord:
    """What a device knows about one sftunnel peer; stored as `/var/sf/peers/<uuid>/sftunnel.json`.

    Our own format (the real file's content is unknown, device-facts 5.2). `sftunnel_port` is where an FMC
    peer's sftunnel TLS listener is (the other side connects there); it is None for FTDs.
    """

    uuid: str
    name: str
    ip: str
    kind: DeviceKind
    sftunnel_port: int | None
    sw_version: str
    sw_build: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> PeerRecord:
        """Parse a record; ValueError names the field that is missing or of the wrong type."""
        raw = json.loads(text)
        if not isinstance(raw, dict):
            # Bad file content, not a programming error: callers catch ValueError, as for bad JSON.
            raise ValueError("a peer record must be a JSON object")  # noqa: TRY004
        strings = {f: _field(raw, f, str) for f in ("uuid", "name", "ip", "kind", "sw_version", "sw_build")}
        kind = strings.pop("kind")
        if kind not in get_args(DeviceKind):
            raise ValueError(f"peer record field 'kind' must be 'fmc' or 'ftd', got {kind!r}")
        port = raw.get("sftunnel_port")
        if port is not None and (not isinstance(port, int) or isinstance(port, bool)):
            raise ValueError(f"peer record field 'sftunnel_port' must be an integer or null, got {port!r}")
        return cls(kind="fmc" if kind == "fmc" else "ftd", sftunnel_port=port, **strings)


def _field(raw: dict[str, object], name: str, kind: type[str]) -> str:
    value = raw.get(name)
    if not isinstance(value, kind):
        raise ValueError(f"peer record field {name!r} must be a string, got {value!r}")  # noqa: TRY004 - as above
    return value


@dataclass(frozen=True)
class DeviceTree:
    """The lab folder of one device, and the device paths that matter to the lab."""

    root: Path
    kind: DeviceKind

    CA_CERT: ClassVar[str] = "/etc/sf/ca_root/cacert.pem"
    CA_KEY: ClassVar[str] = "/etc/sf/ca_root/private/cakey.pem"
    CA_INDEX: ClassVar[str] = "/etc/sf/ca_root/index.txt"
    CA_SERIAL: ClassVar[str] = "/etc/sf/ca_root/serial"
    SFTUNNEL_CERT: ClassVar[str] = "/etc/sf/keys/sftunnel-cert.pem"
    SFTUNNEL_KEY: ClassVar[str] = "/etc/sf/keys/sftunnel-key.pem"
    SFTUNNEL_CONF: ClassVar[str] = "/etc/sf/sftunnel.conf"
    IMS_CONF: ClassVar[str] = "/etc/sf/ims.conf"
    PEERS_DIR: ClassVar[str] = "/var/sf/peers"
    regen_log: ClassVar[str] = "/var/log/sf/sfca_generation.log"

    def host_path(self, device_path: str) -> Path:
        """The file in this device's folder for an absolute device path (`..` is resolved first).

        Raises ValueError naming the path when it is relative or not under one of DEVICE_PREFIXES.
        """
        if not device_path.startswith("/"):
            raise ValueError(f"device path {device_path!r} is not absolute")
        normal = "/" + posixpath.normpath(device_path).lstrip("/")
        if not any(_is_under(normal, prefix) for prefix in DEVICE_PREFIXES):
            raise ValueError(f"device path {device_path!r} is outside the lab's mapped folders")
        return self.root / normal.lstrip("/")

    def device_path(self, host_path: Path) -> str:
        """The device path for a file in this device's folder (inverse of host_path, for messages)."""
        try:
            relative = host_path.relative_to(self.root)
        except ValueError:
            raise ValueError(f"{host_path} is not inside the device folder {self.root}") from None
        device = "/" + relative.as_posix() if relative.parts else "/"
        if not any(_is_under(device, prefix) for prefix in DEVICE_PREFIXES):
            raise ValueError(f"{host_path} is not under a mapped device folder")
        return device

    @staticmethod
    def peer_dir(uuid: str) -> str:
        if not uuid or "/" in uuid or uuid in {".", ".."}:
            raise ValueError(f"{uuid!r} is not a usable peer UUID")
        return f"{DeviceTree.PEERS_DIR}/{uuid}"

    @staticmethod
    def certs_run_dir(ts: int) -> str:
        """Where generate_certs.pl keeps the run started at unix time `ts` (FAILED_PUSH, old files)."""
        return f"/var/tmp/certs/{ts}"  # noqa: S108 - a device path, inside the lab folder

    @property
    def messages_log(self) -> str:
        return "/var/log/messages" if self.kind == "fmc" else "/ngfw/var/log/messages"

    @property
    def bin_dir(self) -> str:
        return "/usr/local/sf/bin" if self.kind == "fmc" else "/ngfw/usr/local/sf/bin"

    @property
    def home(self) -> str:
        return "/Volume/home/admin" if self.kind == "fmc" else "/home/admin"

    def peer_uuids(self) -> list[str]:
        """The peers this device holds a folder for, sorted; empty when there is no peers folder yet."""
        peers = self.host_path(self.PEERS_DIR)
        if not peers.is_dir():
            return []
        return sorted(entry.name for entry in os.scandir(peers) if entry.is_dir())

    def holds_peer(self, uuid: str) -> bool:
        """Whether this device holds a folder for the peer `uuid` (one of `peer_uuids`, without the scan)."""
        return self.host_path(self.peer_dir(uuid)).is_dir()

    def read_ims_conf(self) -> dict[str, str]:
        return parse_ims_conf(self.host_path(self.IMS_CONF).read_text(encoding="utf-8"))

    def read_peer_record(self, uuid: str) -> PeerRecord:
        path = self.host_path(f"{self.peer_dir(uuid)}/{PEER_RECORD_FILE}")
        return PeerRecord.from_json(path.read_bytes())


def parse_ims_conf(text: str) -> dict[str, str]:
    """`KEY=VALUE` lines; blank lines, comments and lines without `=` are skipped; values kept verbatim."""
    entries: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            entries[key.strip()] = value
    return entries


def format_ims_conf(entries: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in entries.items())


def format_sftunnel_conf(peers: Sequence[PeerRecord]) -> str:
    """An FMC's sftunnel.conf: the proxyssl block, then one `peer { ... };` block per peer (our format).

    The real peer blocks are undocumented (device-facts 5.3); ours carry uuid, name, ip, kind and, for an
    FMC peer, the port of its sftunnel listener.
    """
    blocks = [PROXYSSL_BLOCK]
    for peer in peers:
        port = f"  port {peer.sftunnel_port};\n" if peer.sftunnel_port is not None else ""
        fields = f"  uuid {peer.uuid};\n  name {peer.name};\n  ip {peer.ip};\n  kind {peer.kind};\n{port}"
        blocks.append(f"\npeer {{\n{fields}}};\n")
    return "".join(blocks)


def write_file_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` so a reader sees the old or the new content, never a mix (temp file, fsync, rename).

    The parent folder must exist.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
            os.fchmod(tmp.fileno(), mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def append_line(path: Path, line: str) -> None:
    """Append one line to a log file (a newline is added), creating the file and its folders if needed.

    One write() on an O_APPEND descriptor, so concurrent writers do not interleave within a line.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (line if line.endswith("\n") else line + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _is_under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")
