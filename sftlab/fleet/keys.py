"""RSA-2048 keys for the lab, cached on disk so a fleet of hundreds of devices starts in seconds.

Generating one RSA-2048 key costs tens of milliseconds, and a 300-FTD fleet with an FMC pair needs about
600 of them. The pool hands out keys from an on-disk cache (one PKCS#1 PEM file per key) and generates only
what the cache lacks, in parallel worker processes, adding the new keys to the cache for the next start.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEY_BITS = 2048
_PUBLIC_EXPONENT = 65537
# Below this many missing keys, starting worker processes costs more than it saves.
_INLINE_LIMIT = 2


def default_cache_dir() -> Path:
    """Where lab keys are cached between runs.

    `$SFTLAB_KEY_CACHE` if set, else `$XDG_CACHE_HOME/sftrenew/lab-keys`, else `~/.cache/sftrenew/lab-keys`.
    Lab keys are not secrets: they belong to a simulated fleet on loopback and protect nothing, which is why
    keeping them in a plain cache folder (and reusing them across runs) is fine.
    """
    explicit = os.environ.get("SFTLAB_KEY_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "sftrenew" / "lab-keys"


def key_file_name(index: int) -> str:
    """The cache file holding the key at position `index` of every pool's sequence."""
    return f"rsa{KEY_BITS}-{index:05d}.pem"


class KeyPool:
    """Hands out RSA-2048 private keys, each at most once per pool instance.

    Every pool over the same cache folder walks the same sequence of keys (file 0, 1, 2, ...), so two pools
    may hand out the same key; within one pool a cursor guarantees that no key is handed out twice. Missing
    cache files are generated in worker processes and written atomically (temp file + rename), so concurrent
    lab processes filling one cache never read a half-written file; a file that fails to load is treated as
    missing and replaced. `cache_dir=None` generates every key and touches no disk.
    """

    def __init__(self, cache_dir: Path | None, *, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self._cache_dir = cache_dir
        self._workers = workers or os.cpu_count() or 1
        self._lock = threading.Lock()
        self._cursor = 0
        # Keys made ahead by ensure() when there is no disk cache, next to be handed out.
        self._spare: list[rsa.RSAPrivateKey] = []

    @property
    def cache_dir(self) -> Path | None:
        return self._cache_dir

    def take(self, n: int) -> list[rsa.RSAPrivateKey]:
        """Return `n` keys this pool has never returned before; generates whatever the cache lacks."""
        if n < 0:
            raise ValueError(f"cannot take a negative number of keys ({n})")
        with self._lock:
            if self._cache_dir is None:
                keys = self._take_generated(n)
            else:
                keys = self._load_or_make(self._cache_dir, range(self._cursor, self._cursor + n))
            self._cursor += n
            return keys

    def ensure(self, n: int) -> None:
        """Make the first `n` keys of the sequence ready, so later take() calls up to there generate nothing.

        With a disk cache this fills files 0 .. n-1; without one it generates keys into memory.
        """
        with self._lock:
            if self._cache_dir is None:
                missing = n - self._cursor - len(self._spare)
                self._spare.extend(_load_pem(pem) for pem in generate_pems(missing, self._workers))
                return
            names = _listing(self._cache_dir)
            absent = [i for i in range(n) if key_file_name(i) not in names]
            for index, pem in zip(absent, generate_pems(len(absent), self._workers), strict=True):
                _write_atomic(self._cache_dir / key_file_name(index), pem)

    def _take_generated(self, n: int) -> list[rsa.RSAPrivateKey]:
        ready, self._spare = self._spare[:n], self._spare[n:]
        fresh = generate_pems(n - len(ready), self._workers)
        return ready + [_load_pem(pem) for pem in fresh]

    def _load_or_make(self, cache_dir: Path, indices: Iterable[int]) -> list[rsa.RSAPrivateKey]:
        names = _listing(cache_dir)
        found: dict[int, rsa.RSAPrivateKey] = {}
        wanted = list(indices)
        for index in wanted:
            if key_file_name(index) in names:
                key = _try_load(cache_dir / key_file_name(index))
                if key is not None:
                    found[index] = key
        absent = [i for i in wanted if i not in found]
        for index, pem in zip(absent, generate_pems(len(absent), self._workers), strict=True):
            _write_atomic(cache_dir / key_file_name(index), pem)
            found[index] = _load_pem(pem)
        return [found[i] for i in wanted]


def generate_pems(count: int, workers: int) -> list[bytes]:
    """Generate `count` RSA-2048 keys as PKCS#1 PEM, spread over up to `workers` processes.

    Worker processes are started with `forkserver` (never `fork`): the lab runs asyncio and SSH in threads,
    and forking a threaded process can deadlock the child.
    """
    if count <= 0:
        return []
    if count <= _INLINE_LIMIT or workers == 1:
        return _generate_pem_batch(count)
    batches = _split(count, parts=min(count, workers * 4))
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=min(workers, len(batches)), mp_context=context) as pool:
        return [pem for batch in pool.map(_generate_pem_batch, batches) for pem in batch]


def _generate_pem_batch(count: int) -> list[bytes]:
    """Runs in a worker process: keys travel back as PEM bytes because key objects do not pickle."""
    return [
        rsa.generate_private_key(public_exponent=_PUBLIC_EXPONENT, key_size=KEY_BITS).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        for _ in range(count)
    ]


def _split(total: int, *, parts: int) -> list[int]:
    size = math.ceil(total / parts)
    return [min(size, total - start) for start in range(0, total, size)]


def _listing(cache_dir: Path) -> set[str]:
    """One directory scan instead of a stat per key: the cache may hold thousands of files."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    return {entry.name for entry in os.scandir(cache_dir)}


def _load_pem(pem: bytes) -> rsa.RSAPrivateKey:
    # Full RSA validation costs as much as generating the key (~40 ms); these keys come from this module
    # (freshly generated or our own cache of lab-only keys), so the checks buy nothing here.
    key = serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != KEY_BITS:
        raise ValueError(f"not an RSA-{KEY_BITS} private key")
    return key


def _try_load(path: Path) -> rsa.RSAPrivateKey | None:
    """A key file that vanished or does not parse (e.g. cut short by a crash) counts as missing."""
    try:
        return _load_pem(path.read_bytes())
    except (OSError, ValueError, TypeError):
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
